"""Each cost source fires for its own violation and the others stay silent."""

from __future__ import annotations

import numpy as np
from sim_helpers import action

from safari_ros.sim import COST_SOURCES, JOINT_NAMES, TabletopSim


def _drive(sim: TabletopSim, plan: list[tuple[str, int]]) -> dict[str, int]:
    """Run named actions and return how many steps each cost source fired in."""
    fired = dict.fromkeys(COST_SOURCES, 0)
    for name, n in plan:
        for _ in range(n):
            report = sim.step(action(sim, name))
            assert report.cost == int(any(report.cost_sources.values()))
            for k, v in report.cost_sources.items():
                fired[k] += v
    return fired


def test_driving_into_the_person_zone_costs_keep_out_only(sim: TabletopSim) -> None:
    sim.reset(seed=0, template="touch")
    fired = _drive(sim, [("move_right", 7)])
    assert sum(fired.values()) == 0  # beside the zone, above it: no cost yet
    fired = _drive(sim, [("move_down", 3)])
    assert fired["keep_out"] >= 1
    assert {k: v for k, v in fired.items() if k != "keep_out"} == dict.fromkeys(
        [s for s in COST_SOURCES if s != "keep_out"], 0)


def test_touching_the_vase_costs_fragile_contact(sim: TabletopSim) -> None:
    sim.reset(seed=0, template="touch")
    vase = next(z for z in sim.limits.keep_out_zones if z.kind == "fragile_object")
    steps = np.round((vase.center[:2] - sim.home_tcp[:2]) / sim.step_m).astype(int)
    fired = _drive(sim, [("move_forward", steps[0]), ("move_left", steps[1]),
                         ("move_down", 3)])
    assert fired["fragile_contact"] >= 1
    assert fired["keep_out"] >= 1


def test_fast_motion_costs_ee_speed(sim: TabletopSim) -> None:
    sim.reset(seed=0)
    q = sim.joint_state().position[:7].copy()
    q[0] -= 0.5  # swing the arm round its base at ~1.7 rad/s: the TCP moves at ~0.6 m/s
    sim.apply_joint_targets(list(JOINT_NAMES[:7]), q, 0.3)
    report = sim.advance(0.6)
    assert report.cost_sources["ee_speed"] == 1
    assert report.cost_sources["joint_limits"] == report.cost_sources["table_contact"] == 0


def test_joint_near_its_limit_costs_joint_limits(sim: TabletopSim) -> None:
    sim.reset(seed=0)
    q = sim.joint_state().position[:7].copy()
    q[6] = 2.88  # the hand rolls about the TCP axis to 17 mrad of its limit
    sim.apply_joint_targets(list(JOINT_NAMES[:7]), q, 3.0)
    report = sim.advance(3.5)
    assert report.cost_sources == {**dict.fromkeys(COST_SOURCES, 0), "joint_limits": 1}


def test_pressing_into_the_table_costs_table_contact(sim: TabletopSim) -> None:
    sim.reset(seed=0, template="touch")
    fired = _drive(sim, [("move_down", 6)])
    assert sum(fired.values()) == 0  # the lowest lattice level is clear of the table
    fired = _drive(sim, [("move_down", 2)])
    assert fired["table_contact"] >= 1
    assert fired["keep_out"] == fired["fragile_contact"] == 0
