"""Speed and separation monitoring (safety/ssm.py) against hand-worked values of config/hri.yaml,
and its fail-closed answers."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest

from safari_ros.config import ConfigError, load_config
from safari_ros.safety.ssm import (
    Verdict,
    protective_distance,
    ssm_decide,
    ssm_params,
    stopping,
)

# config/hri.yaml: T_r 0.1 s; C 0.048, Z_d 0.03, Z_r 0.01 (sum 0.088 m); stopping table rows
# [0, 0.05, 0], [0.25, 0.05, 0.006], [0.5, 0.05, 0.010], [0.75, 0.05, 0.015]; band 0.15 m.
FIXED = 0.048 + 0.03 + 0.01


@pytest.fixture(scope="module")
def p(cfg):
    return ssm_params(cfg)


def test_config_values_are_the_documented_ones(p):
    assert (p.person_speed_default_mps, p.hand_speed_default_mps) == (1.6, 2.0)
    assert (p.reaction_time_s, p.intrusion_distance_m) == (0.1, 0.048)
    assert p.intrusion_distance_m == pytest.approx(8 * (20 - 14) / 1000)  # ISO 13855, d = 20 mm
    assert p.person_uncertainty_m + p.intrusion_distance_m + p.robot_uncertainty_m \
        == pytest.approx(FIXED)


def test_protective_distance_hand_worked(p):
    # Unmeasured hand reaching in, arm at 0.25 m/s (a table row: T_s 0.05 s, S_s 0.006 m):
    # S_h = 2.0 * (0.1 + 0.05) = 0.3; S_r = 0.25 * 0.1 = 0.025; S_p = 0.3 + 0.025 + 0.006 + 0.088
    assert protective_distance(p, 0.25) == pytest.approx(0.3 + 0.025 + 0.006 + FIXED)
    assert protective_distance(p, 0.25) == pytest.approx(0.419)
    # Measured 0.5 m/s, arm at 0.375 m/s (between rows: T_s 0.05, S_s 0.006 + 0.5 * 0.004 = 0.008):
    # S_h = 0.5 * 0.15 = 0.075; S_r = 0.0375; S_p = 0.075 + 0.0375 + 0.008 + 0.088 = 0.2085
    assert protective_distance(p, 0.375, 0.5) == pytest.approx(0.2085)
    # Unmeasured whole body (1.6 m/s), arm still: S_h = 1.6 * (0.1 + 0.05) = 0.24; S_p = 0.328
    assert protective_distance(p, 0.0, None, reaching=False) == pytest.approx(0.328)
    # Beyond the stopping table's 0.75 m/s there is no bound
    assert stopping(p, 0.8) is None and math.isinf(protective_distance(p, 0.8))


def test_protective_distance_from_a_deceleration(p):
    # a = 2 m/s^2, 0.02 s braking delay, arm 0.4 m/s: T_s = 0.02 + 0.4 / 2 = 0.22 s;
    # S_s = 0.4 * 0.02 + 0.4^2 / (2 * 2) = 0.008 + 0.04 = 0.048 m; person 1 m/s:
    # S_h = 1.0 * (0.1 + 0.22) = 0.32; S_r = 0.04; S_p = 0.32 + 0.04 + 0.048 + 0.088 = 0.496
    q = dataclasses.replace(p, stopping_table=(), deceleration_mps2=2.0, brake_delay_s=0.02)
    assert stopping(q, 0.4) == pytest.approx((0.22, 0.048))
    assert protective_distance(q, 0.4, 1.0) == pytest.approx(0.496)


def _decide(p, separation=1.0, person_speed=None, robot_speed=0.25, tracking_age_s=0.01,
            robot_state_age_s=0.01, **kw):
    return ssm_decide(p, separation, person_speed, robot_speed, tracking_age_s, robot_state_age_s,
                      **kw)


def test_decisions_around_the_protective_distance(p):
    stop = _decide(p, separation=0.40)  # S_p = 0.419 (above)
    assert stop.verdict is Verdict.STOP and stop.reasons[0].startswith("separation:0.400<S_p:0.419")
    assert math.isinf(stop.duration_scale)
    ok = _decide(p, separation=0.57)  # >= S_p + band = 0.569
    assert ok.verdict is Verdict.OK and ok.duration_scale == 1.0 and ok.reasons == ()
    # Person measured at 1.0 m/s, arm 0.25: S_p(v) = 1.0 * 0.15 + 0.1 v + 0.024 v + 0.088
    # = 0.238 + 0.124 v (v <= 0.25), S_p(0.25) = 0.269. At 0.40 m the band asks
    # S_p(v) + 0.15 <= 0.40: v = 0.012 / 0.124 = 0.096774 m/s, duration x 0.25 / v = 2.58333.
    slow = _decide(p, separation=0.40, person_speed=1.0)
    assert slow.verdict is Verdict.REDUCED_SPEED
    assert slow.protective_distance_m == pytest.approx(0.269)
    assert slow.duration_scale == pytest.approx(0.25 / (0.012 / 0.124), rel=1e-6)
    # Nearer, where even a still arm's S_p + band is not met: the slowest allowed (x 4)
    assert _decide(p, separation=0.30, person_speed=1.0).duration_scale == 4.0


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"separation": float("nan")}, "separation_invalid"),
    ({"separation": None}, "separation_invalid"),
    ({"separation": -0.01}, "separation_invalid"),
    ({"robot_speed": float("nan")}, "robot_speed_invalid"),
    ({"robot_speed": float("inf")}, "robot_speed_invalid"),
    ({"person_speed": float("nan")}, "person_speed_invalid"),
    ({"person_speed": -1.0}, "person_speed_invalid"),
    ({"tracking_age_s": None}, "tracking_missing"),
    ({"tracking_age_s": 0.2}, "tracking_stale"),
    ({"tracking_age_s": float("nan")}, "tracking_age_invalid"),
    ({"tracking_age_s": -0.1}, "tracking_from_future"),
    ({"robot_state_age_s": None}, "robot_state_missing"),
    ({"robot_state_age_s": 0.5}, "robot_state_stale"),
    ({"person_tracked": False}, "tracking_lost"),
    ({"robot_speed": 0.8}, "robot_speed_beyond_stopping_data"),
])
def test_fails_closed(p, kwargs, reason):
    d = _decide(p, **kwargs)  # every other input is far and fresh: ok without the fault
    assert d.verdict is Verdict.STOP and math.isinf(d.duration_scale)
    assert any(r.startswith(reason) for r in d.reasons), d.reasons


def test_every_failed_input_is_reported(p):
    d = _decide(p, separation=float("nan"), tracking_age_s=None, person_tracked=False)
    assert {r.split(":")[0] for r in d.reasons} == {
        "separation_invalid", "tracking_missing", "tracking_lost"}


def test_incoherent_config_is_refused(cfg):
    def bad(path, value):
        c = copy.deepcopy(cfg)
        *keys, leaf = path
        node = c
        for k in keys:
            node = node[k]
        node[leaf] = value
        with pytest.raises(ConfigError):
            ssm_params(c)

    # T_r under frame period + latency + servo tick: 1/30 + 0.04 + 0.01 = 0.0833 s
    bad(("hri", "ssm", "reaction_time_s"), 0.08)
    bad(("hri", "ssm", "person_uncertainty_m"), 0.02)  # under 3 * 0.01 m noise
    bad(("hri", "ssm", "stopping", "table"), [[0.1, 0.05, 0.0], [0.5, 0.05, 0.01]])  # not from 0
    bad(("hri", "ssm", "stopping", "table"), [[0.0, 0.05, 0.01], [0.5, 0.05, 0.005]])  # shrinks
    bad(("hri", "ssm", "max_duration_scale"), 0.5)
    bad(("hri", "ssm", "intrusion_distance_m"), float("nan"))
    with pytest.raises(ConfigError, match=r"hri\.ssm"):
        ssm_params(load_config(cfg["_extends"][0]))  # the tabletop has no SSM
