"""Helpers shared by the simulator tests."""

from __future__ import annotations

import numpy as np

from safari_ros.robot import kinematics as kin
from safari_ros.sim import TabletopSim


def action(sim: TabletopSim, name: str) -> int:
    """Index of the configured action called name."""
    return next(a.index for a in sim.actions if a.name == name)


def press_into_the_table(sim: TabletopSim, duration: float) -> np.ndarray:
    """Send the arm to a point 3 cm under the table top over `duration` s (slow enough for the
    joint speed limits); returns the unreachable joint target."""
    home = np.asarray(sim.cfg["sim"]["home_joint_positions"], float)
    below = kin.solve_ik(np.array([0.45, 0.0, -0.03]), kin.tcp_pose(home)[1], home,
                         q_rest=home).q
    sim.apply_joint_trajectory(kin.ARM_JOINTS, [(below, duration)])
    return below
