"""The robot: the Panda's kinematics and the discrete primitives planned on it (ROS-free).

Shared by the simulator and the shield, so the arm and its motions are described once.
"""
