"""The robot's controller config (config/panda_controllers.yaml) agrees with the simulator's
controller and with what the shield sends."""

from __future__ import annotations

import yaml

from nodes.stack_support import REPO
from safari_ros.config import load_config
from safari_ros.robot import kinematics as kin

CONTROLLERS = REPO / "config" / "panda_controllers.yaml"


def test_the_robot_controller_matches_the_simulated_one_and_the_shield():
    cfg = load_config()
    sim = cfg["sim"]["controller"]
    name = cfg["topics"]["controller_command"].strip("/").split("/")[0]
    jtc = yaml.safe_load(CONTROLLERS.read_text())[name]["ros__parameters"]
    assert jtc["cmd_timeout"] == sim["cmd_timeout_s"]
    assert jtc["constraints"]["goal_time"] == sim["goal_time_s"]
    assert jtc["cmd_timeout"] == 0 or jtc["cmd_timeout"] > jtc["constraints"]["goal_time"]
    # The shield's trajectories name the arm joints and the first finger.
    assert jtc["joints"] == [*kin.ARM_JOINTS, kin.FINGER_JOINTS[0]]
