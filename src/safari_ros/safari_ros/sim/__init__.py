"""MuJoCo tabletop simulator of SAFARI (ROS-free: imports neither rclpy nor message types).

- ``TabletopSim`` (tabletop.py): the API sim_node wraps - reset, step, apply_joint_trajectory,
  advance, render_rgbd, joint_state, camera_info.
- ``SafariTabletop-v0`` (env.py): the Gymnasium environment, registered on import.
- ``ScriptedOracle`` / ``record_episode`` (oracle.py): the expert for demonstrations.
- ``kinematics``: the Panda's DH model and IK, shared with the shield.
"""

import gymnasium as gym

from safari_ros.sim.oracle import Demonstration, ScriptedOracle, record_episode
from safari_ros.sim.tabletop import (
    COST_SOURCES,
    JOINT_NAMES,
    CommandRejectedError,
    JointState,
    StepReport,
    TabletopSim,
)
from safari_ros.sim.tasks import TaskError, TaskSpec, parse_instruction

ENV_ID = "SafariTabletop-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="safari_ros.sim.env:SafariTabletopEnv")

__all__ = [
    "COST_SOURCES",
    "ENV_ID",
    "JOINT_NAMES",
    "CommandRejectedError",
    "Demonstration",
    "JointState",
    "ScriptedOracle",
    "StepReport",
    "TabletopSim",
    "TaskError",
    "TaskSpec",
    "parse_instruction",
    "record_episode",
]
