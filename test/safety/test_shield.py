"""The shield's decision rule: nothing that breaks a hard limit is let through; it fails closed."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from support import tcp_path_enters_zone

from safari_ros.config import action_specs, load_config, safety_limits
from safari_ros.safety.shield import Check, PredictedMotion, Shield

CFG = load_config()
LIMITS = safety_limits(CFG)
ACTIONS = action_specs(CFG)
STEP = float(CFG["actions"]["step_m"])
DURATION = float(CFG["actions"]["duration_s"])
LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
UPPER = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
VELOCITY = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])  # Panda datasheet
SHIELD = Shield(LIMITS, ACTIONS, LOWER, UPPER, VELOCITY)
HOME_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
BY_NAME = {a.name: a for a in ACTIONS}


def motion_for(
    action_name: str, ee: np.ndarray, joints: np.ndarray | None = None, scale: float = 1.0
) -> PredictedMotion:
    a = BY_NAME[action_name]
    end = ee + STEP * scale * np.asarray(a.delta)
    return PredictedMotion(ee, end, DURATION, HOME_Q if joints is None else joints)


def row(action_name: str, c: float) -> list[float]:
    """A C(s, .) row with c at the given action, 0 elsewhere."""
    out = [0.0] * len(ACTIONS)
    out[BY_NAME[action_name].index] = c
    return out


def breaks_a_hard_limit(m: PredictedMotion) -> bool:
    """Independent check by dense sampling of the straight path (not the shield's slab test)."""
    if tcp_path_enters_zone(m.ee_start, m.ee_end, LIMITS.keep_out_zones):
        return True
    ws = LIMITS.workspace
    path = np.array([m.ee_start + t * (m.ee_end - m.ee_start) for t in np.linspace(0, 1, 201)])
    outside = (np.linalg.norm(np.maximum(0, np.maximum(ws.min - path, path - ws.max)), axis=1)
               + np.maximum(0, LIMITS.table_clearance_m - path[:, 2]))
    # Out of the box (or below the table clearance), or further out when it started outside.
    if outside.max() > 0 and not (outside[0] > 0 and np.all(np.diff(outside) <= 1e-9)):
        return True
    if np.linalg.norm(m.ee_end - m.ee_start) / m.duration_s > LIMITS.ee_speed_limit_mps:
        return True
    margin = LIMITS.joint_limit_margin_rad
    jt = m.joint_target
    return bool(np.any(jt < LOWER + margin) or np.any(jt > UPPER - margin))


def test_a_safe_move_passes_unchanged():
    v = SHIELD.decide(
        BY_NAME["move_up"].index,
        row("move_up", 0.1),
        motion_for("move_up", np.array([0.5, 0, 0.2])),
        0.01,
        0.01,
    )
    assert not v.intervened and v.reason == ""
    assert all(v.codes[c] == Check.OK for c in v.codes)


def test_moving_into_a_keep_out_zone_is_replaced_by_stop_with_the_zone_named():
    vase = LIMITS.keep_out_zones[0]
    start = vase.center - np.array([vase.half_extents[0] + STEP / 2, 0, 0])
    v = SHIELD.decide(
        BY_NAME["move_forward"].index,
        row("move_forward", 0),
        motion_for("move_forward", start),
        0.0,
        0.0,
    )
    assert v.executed.name == "stop" and v.intervened and v.hard_limit_refusal
    assert v.codes["keep_out"] == Check.VIOLATION
    assert v.reason.startswith(f"keep_out:{vase.name}")


def test_learned_check_uses_tau_safe():
    m = motion_for("move_left", np.array([0.5, 0.0, 0.2]))
    idx = BY_NAME["move_left"].index
    assert not SHIELD.decide(idx, row("move_left", LIMITS.tau_safe - 1e-3), m, 0, 0).intervened
    v = SHIELD.decide(idx, row("move_left", LIMITS.tau_safe), m, 0, 0)
    assert v.intervened and v.codes["learned"] == Check.VIOLATION
    assert not v.hard_limit_refusal  # the learned check is not a hard limit


def test_joint_limit_proximity_sends_home_and_failed_ik_is_not_a_pass():
    idx = BY_NAME["move_down"].index
    near_limit = UPPER.copy()
    v = SHIELD.decide(
        idx, row("move_down", 0), motion_for("move_down", np.array([0.5, 0, 0.3]), near_limit), 0, 0
    )
    assert v.executed.name == LIMITS.backup_for_reason["joint_limits"]
    m = PredictedMotion(np.array([0.5, 0, 0.3]), np.array([0.5, 0, 0.26]), DURATION, None)
    v = SHIELD.decide(idx, row("move_down", 0), m, 0, 0)
    assert v.codes["joint_limits"] == Check.NOT_CHECKED and v.intervened


def test_stale_inputs_trigger_the_watchdog():
    m = motion_for("move_up", np.array([0.5, 0, 0.2]))
    v = SHIELD.decide(BY_NAME["move_up"].index, row("move_up", 0), m, LIMITS.watchdog_s + 0.01, 0.0)
    assert v.executed.name == "stop" and v.codes["watchdog"] == Check.VIOLATION
    assert not v.hard_limit_refusal


def test_malformed_input_fails_closed():
    m = motion_for("move_up", np.array([0.5, math.nan, 0.2]))
    up = BY_NAME["move_up"].index
    v = SHIELD.decide(up, row("move_up", 0), m, 0, 0)
    assert v.executed.name == "stop" and v.codes["input_valid"] == Check.VIOLATION
    good = motion_for("move_up", np.ones(3) * 0.3)
    assert SHIELD.decide(up, row("move_up", math.nan), good, 0, 0).executed.name == "stop"
    assert SHIELD.decide(up, [0.0, 0.0], good, 0, 0).executed.name == "stop"  # short C row
    v = SHIELD.decide(99, row("move_up", 0), m, 0, 0)
    assert v.executed.name == "stop" and v.codes["input_valid"] == Check.VIOLATION
    assert SHIELD.decide(up, row("move_up", 0), None, 0, 0).executed.name == "stop"


coords = st.tuples(st.floats(0.0, 1.0), st.floats(-0.6, 0.6), st.floats(-0.05, 0.7))


@settings(max_examples=400, deadline=None)
@given(
    action=st.sampled_from([a.name for a in ACTIONS]),
    ee=coords,
    scale=st.floats(0.1, 4.0),
    joints=st.lists(st.floats(-3.2, 3.8), min_size=7, max_size=7),
    c_value=st.floats(0.0, 1.0),
)
def test_property_nothing_let_through_breaks_a_hard_limit(action, ee, scale, joints, c_value):
    m = motion_for(action, np.array(ee), np.array(joints), scale)
    v = SHIELD.decide(BY_NAME[action].index, row(action, c_value), m, 0.0, 0.0)
    if not v.intervened and v.executed.name != "stop" and not BY_NAME[action].gripper:
        assert not breaks_a_hard_limit(m)
        assert c_value < LIMITS.tau_safe
    if v.intervened:
        assert v.executed.backup


def test_leaving_a_zone_is_allowed_but_the_hand_clearance_and_links_count():
    vase = LIMITS.keep_out_zones[0]
    inside = vase.center.copy()
    out = SHIELD.decide(BY_NAME["move_backward"].index, row("move_backward", 0),
                        motion_for("move_backward", inside), 0, 0)
    deeper_start = vase.center - np.array([vase.half_extents[0] / 2, 0, 0])
    deeper = SHIELD.decide(BY_NAME["move_forward"].index, row("move_forward", 0),
                           motion_for("move_forward", deeper_start), 0, 0)
    assert out.codes["keep_out"] == Check.OK and deeper.codes["keep_out"] == Check.VIOLATION
    # The TCP path passes the zone at half the clearance: the hand would touch it.
    beside = vase.center + np.array([0, vase.half_extents[1] + LIMITS.keep_out_margin_m / 2, 0])
    v = SHIELD.decide(BY_NAME["move_forward"].index, row("move_forward", 0),
                      motion_for("move_forward", beside - np.array([STEP, 0, 0])), 0, 0)
    assert v.codes["keep_out"] == Check.VIOLATION
    # An arm link inside a zone refuses the move even when the TCP path is clear.
    start = np.array([0.5, 0.0, 0.2])
    m = motion_for("move_up", start)
    with_link = PredictedMotion(m.ee_start, m.ee_end, m.duration_s, m.joint_target,
                                link_points=np.array([vase.center]))
    assert SHIELD.decide(BY_NAME["move_up"].index, row("move_up", 0), m, 0, 0).codes[
        "keep_out"] == Check.OK
    assert SHIELD.decide(BY_NAME["move_up"].index, row("move_up", 0), with_link, 0, 0).codes[
        "keep_out"] == Check.VIOLATION


def _swing(out: np.ndarray, samples: int = 9) -> np.ndarray:
    """A TCP path from a safe point out by `out` and back (a joint-space motion can swing)."""
    start = np.array([0.5, 0.0, 0.3])
    return np.array([start + out * math.sin(math.pi * s) for s in np.linspace(0, 1, samples)])


def test_the_whole_predicted_path_is_checked_not_only_its_ends():
    idx = BY_NAME["move_up"].index
    ws_top = LIMITS.workspace.max[2]
    out = _swing(np.array([0.0, 0.0, ws_top - 0.3 + 0.02]))  # over the workspace's top face
    slow = PredictedMotion(out[0], out[-1], 10.0, HOME_Q, None, out)
    v = SHIELD.decide(idx, row("move_up", 0), slow, 0, 0)
    assert v.codes["workspace"] == Check.VIOLATION and v.intervened
    # Ends 1 mm apart, but a 10 cm swing in 0.4 s peaks far above the speed limit.
    fast = _swing(np.array([0.1, 0.0, 0.0]))
    m = PredictedMotion(fast[0], fast[-1], DURATION, HOME_Q, None, fast)
    assert m.peak_tcp_speed() > LIMITS.ee_speed_limit_mps
    assert SHIELD.decide(idx, row("move_up", 0), m, 0, 0).codes["ee_speed"] == Check.VIOLATION


def test_fast_joints_are_refused_even_when_the_tcp_moves_slowly():
    """Near a singularity a small TCP step needs fast joints; the arm then lags and overshoots."""
    idx = BY_NAME["move_forward"].index
    ee = np.array([0.5, 0.0, 0.3])
    end = ee + np.array([STEP, 0.0, 0.0])
    wrist = np.array([0, 0, 0, 0, 0, 0, 0.9])  # the last joint turns 0.9 rad
    joints = np.array([HOME_Q + s * wrist for s in np.linspace(0, 1, 9)])
    allowed = LIMITS.joint_speed_fraction * VELOCITY[6]
    slow = PredictedMotion(ee, end, 0.9 / allowed * 1.1, joints[-1], None, None, joints)
    assert not SHIELD.decide(idx, row("move_forward", 0), slow, 0, 0).intervened
    fast = PredictedMotion(ee, end, 0.9 / allowed * 0.9, joints[-1], None, None, joints)
    v = SHIELD.decide(idx, row("move_forward", 0), fast, 0, 0)
    assert v.codes["joint_limits"] == Check.VIOLATION and v.hard_limit_refusal
    assert v.executed.name == LIMITS.backup_for_reason["joint_limits"]


def test_an_arm_pushed_out_of_the_workspace_may_only_come_back():
    """Contact can push the TCP under the workspace floor; holding it there would cost at every
    step, so a move back in passes and every move that stays out or goes further is refused."""
    below = np.array([0.5, 0.0, LIMITS.workspace.min[2] - 0.01])

    def verdict(name: str, scale: float = 1.0):
        return SHIELD.decide(BY_NAME[name].index, row(name, 0), motion_for(name, below,
                                                                          scale=scale), 0, 0)

    assert not verdict("move_up").intervened
    assert not verdict("move_up", scale=0.1).intervened  # closer, though not yet inside
    for name in ("move_forward", "move_left", "move_down"):
        v = verdict(name)
        assert v.codes["workspace"] == Check.VIOLATION and v.executed.name == "stop", name


def test_a_joint_state_older_than_the_observation_triggers_the_watchdog():
    m = motion_for("move_up", np.array([0.5, 0, 0.2]))
    up = BY_NAME["move_up"].index
    lag = LIMITS.joint_state_max_lag_s
    assert not SHIELD.decide(up, row("move_up", 0), m, 0.0, 0.0, lag).intervened
    assert not SHIELD.decide(up, row("move_up", 0), m, 0.0, 0.0, -1.0).intervened  # newer: fine
    for bad in (lag + 0.01, math.inf, math.nan):
        v = SHIELD.decide(up, row("move_up", 0), m, 0.0, 0.0, bad)
        assert v.executed.name == "stop" and v.codes["watchdog"] == Check.VIOLATION, bad
        assert v.reason.startswith("watchdog:joint_state"), v.reason
