"""Safety: the shield, one decision for every proposal (ROS-free).

Start at `shield.Shield.decide`: it validates the input, runs the watchdog, plans the proposal
(robot.primitives), checks the motion (`motion`: the arm's volumes along the controller's cubic,
`geometry`: their clearances), applies the learned check and picks and checks the backups.
"""
