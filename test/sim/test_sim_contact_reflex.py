"""The simulated arm's contact reflex (the Panda's collision behaviour): a motion that the world
pushes back on harder than sim.controller.contact_reflex_force_n stops, and the arm holds where
it is instead of storing the rest of the motion in its position error. Grasps and the oracle's
pushes stay below it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sim_helpers import press_into_the_table

from safari_ros.config import ConfigError, load_config
from safari_ros.sim import TabletopSim
from safari_ros.sim.oracle import ScriptedOracle

DURATION = 1.5  # slow enough for the joint speed limits


def _sim(reflex_n: float | None = None) -> TabletopSim:
    cfg = copy.deepcopy(load_config())
    if reflex_n is not None:
        cfg["sim"]["controller"]["contact_reflex_force_n"] = reflex_n
    sim = TabletopSim(cfg)
    sim.reset(seed=0)
    return sim


def test_pressing_into_the_table_stops_the_arm_where_it_is() -> None:
    sim = _sim()
    below = press_into_the_table(sim, DURATION)
    limit = sim.contact_reflex_n
    while sim.reflex_stops == 0 and sim.sim_time < DURATION:
        sim.advance(0.01)
    assert sim.reflex_stops == 1
    measured = sim.joint_state().position[:7]
    held = sim._setpoint(sim.sim_time)[:7]
    assert np.allclose(held, measured, atol=1e-6)  # held at the pose where it tripped ...
    assert np.linalg.norm(held - below) > 0.05  # ... not at the point under the table
    sim.advance(0.5)
    assert sim.external_force() < limit  # it stopped pushing
    assert sim.reflex_stops == 1  # holding does not trip it again
    assert sim.ee_position()[2] > -0.01
    sim.close()


def test_without_the_reflex_the_arm_keeps_pressing() -> None:
    sim = _sim(reflex_n=0.0)
    sim.cmd_timeout_s = 0.0  # JTC's timeout would end the press too
    below = press_into_the_table(sim, DURATION)
    sim.advance(DURATION + 0.5)
    assert sim.reflex_stops == 0
    assert np.allclose(sim._setpoint(sim.sim_time)[:7], below)
    assert sim.external_force() > load_config()["sim"]["controller"]["contact_reflex_force_n"]
    sim.close()


@pytest.mark.parametrize("template", ["lift", "push"])
def test_grasps_and_pushes_do_not_trip_it(template: str) -> None:
    sim = _sim()
    for seed in range(4):
        sim.reset(seed=seed, template=template)
        oracle = ScriptedOracle(sim)
        success = False
        for _ in range(sim.episode_steps):
            success = sim.step(oracle.act()).success
            if success:
                break
        assert success, f"seed {seed}: {template} not solved"
        assert sim.reflex_stops == 0, f"seed {seed}: the reflex stopped a {template}"
    sim.close()


def test_the_threshold_must_not_be_negative() -> None:
    cfg = copy.deepcopy(load_config())
    cfg["sim"]["controller"]["contact_reflex_force_n"] = -1.0
    with pytest.raises(ConfigError, match="contact_reflex_force_n"):
        TabletopSim(cfg)
