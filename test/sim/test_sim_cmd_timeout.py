"""The simulated joint_trajectory_controller's cmd_timeout (ros2_control's parameter): a command
is stale cmd_timeout s after its trajectory's last point, and the arm then holds where it is, so
an arm that could not reach the point (here: pressed into the table) stops pressing on."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sim_helpers import press_into_the_table

from safari_ros.config import ConfigError, load_config
from safari_ros.sim import TabletopSim

DURATION = 1.5  # slow enough for the joint speed limits


def _press_into_the_table(timeout: float) -> tuple[TabletopSim, np.ndarray]:
    cfg = copy.deepcopy(load_config())
    cfg["sim"]["controller"]["cmd_timeout_s"] = timeout
    cfg["sim"]["controller"]["contact_reflex_force_n"] = 0.0  # it would stop the press first
    sim = TabletopSim(cfg)
    sim.reset(seed=0)
    return sim, press_into_the_table(sim, DURATION)


def test_a_stale_command_holds_the_arm_where_it_is() -> None:
    timeout = 0.5
    sim, below = _press_into_the_table(timeout)
    sim.advance(DURATION + timeout - 0.05)
    assert np.allclose(sim._setpoint(sim.sim_time)[:7], below)  # still pressing on
    measured = sim.joint_state().position[:7]
    while np.allclose(sim._setpoint(sim.sim_time)[:7], below) and sim.sim_time < 5.0:
        measured = sim.joint_state().position[:7]
        sim.advance(0.01)
    held = sim._setpoint(sim.sim_time)[:7]
    assert sim.sim_time <= DURATION + timeout + 0.05  # stale once timeout s after the end
    assert np.linalg.norm(held - below) > 1e-2  # not the unreachable point any more ...
    assert np.allclose(held, measured, atol=2e-3)  # ... but where the arm was then
    sim.close()


def test_zero_disables_the_timeout() -> None:
    sim, below = _press_into_the_table(0.0)
    sim.advance(DURATION + 2.0)
    assert np.allclose(sim._setpoint(sim.sim_time)[:7], below)
    sim.close()


def test_the_timeout_must_exceed_goal_time() -> None:
    cfg = copy.deepcopy(load_config())
    cfg["sim"]["controller"].update(cmd_timeout_s=0.1, goal_time_s=0.2)
    with pytest.raises(ConfigError, match="cmd_timeout"):
        TabletopSim(cfg)
