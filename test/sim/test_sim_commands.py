"""Joint commands: good ones are followed, bad ones are refused with a reason and the arm holds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safari_ros.sim import JOINT_NAMES, CommandRejectedError, TabletopSim

ARM = list(JOINT_NAMES[:7])


def test_valid_trajectory_is_followed(sim: TabletopSim) -> None:
    sim.reset(seed=1)
    q0 = sim.joint_state().position[:7]
    target = q0.copy()
    target[0] += 0.2
    target[6] -= 0.3
    sim.apply_joint_trajectory(ARM, [(q0 + (target - q0) / 2, 0.5), (target, 1.0)])
    sim.advance(1.5)
    np.testing.assert_allclose(sim.joint_state().position[:7], target, atol=5e-3)
    # A partial command (only the fingers) leaves the arm where it is.
    sim.apply_joint_targets(list(JOINT_NAMES[7:]), [0.01, 0.01], 0.5)
    sim.advance(1.0)
    state = sim.joint_state()
    np.testing.assert_allclose(state.position[7:], [0.01, 0.01], atol=2e-3)
    np.testing.assert_allclose(state.position[:7], target, atol=5e-3)


BAD = {
    "unknown joint": (["panda_joint1", "elbow"], [(np.zeros(2), 1.0)], "unknown joint"),
    "nan": (ARM, [([0.0, math.nan, 0, -2, 0, 2, 0], 1.0)], "non-finite"),
    "empty points": (ARM, [], "empty"),
    "empty names": ([], [([], 1.0)], "empty"),
    "beyond limits": (ARM, [([0.0, 0.0, 0.0, 0.5, 0.0, 2.0, 0.0], 2.0)], "beyond its limits"),
    "finger beyond": (["panda_finger_joint1"], [([0.06], 1.0)], "beyond its limits"),
    "wrong length": (ARM, [([0.0, 0.1], 1.0)], "positions for 7 joints"),
    "duplicate": (["panda_joint1", "panda_joint1"], [([0.0, 0.0], 1.0)], "duplicate"),
    "time not increasing": (["panda_joint1"], [([0.1], 1.0), ([0.2], 1.0)], "not increasing"),
    "zero time": (["panda_joint1"], [([0.1], 0.0)], "not increasing"),
    "too fast": (["panda_joint1"], [([2.0], 0.1)], "rad/s"),
}


def test_a_trajectory_with_velocities_is_a_cubic_from_the_measured_state(sim: TabletopSim) -> None:
    """JTC semantics: with velocities, the setpoint starts at the measured position with the
    measured velocity and eases into the target (a cubic reaches half way at half time)."""
    sim.reset(seed=1)
    q0 = sim.joint_state().position[:7]
    target = q0 + np.array([0.3, 0, 0, 0, 0, 0, 0])
    sim.apply_joint_trajectory(ARM, [(target, 1.0)], velocities=[np.zeros(7)])
    quarter, half = sim._setpoint(sim.data.time + 0.25), sim._setpoint(sim.data.time + 0.5)
    np.testing.assert_allclose(half[0], q0[0] + 0.15, atol=1e-9)
    assert quarter[0] - q0[0] == pytest.approx(0.3 * (3 * 0.25**2 - 2 * 0.25**3))  # not 0.075
    sim.advance(1.5)
    np.testing.assert_allclose(sim.joint_state().position[:7], target, atol=5e-3)
    before = sim.joint_state().position.copy()
    for rows, reason in (([np.zeros(7), []], "velocities must be 7"),
                         ([[0.0] * 6 + [math.nan]], "finite"), ([], "velocity rows")):
        points = [(target, 0.5), (target, 1.0)][:max(1, len(rows))]
        with pytest.raises(CommandRejectedError, match=reason):
            sim.apply_joint_trajectory(ARM, points, velocities=rows)
    sim.advance(0.5)
    np.testing.assert_allclose(sim.joint_state().position[:7], before[:7], atol=2e-3)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_command_is_refused_and_arm_holds(sim: TabletopSim, case: str) -> None:
    sim.reset(seed=2)
    names, points, reason = BAD[case]
    before = sim.joint_state().position.copy()
    with pytest.raises(CommandRejectedError, match=reason):
        sim.apply_joint_trajectory(names, points)
    sim.advance(1.0)
    np.testing.assert_allclose(sim.joint_state().position[:7], before[:7], atol=2e-3)


def test_bad_command_stops_a_running_motion(sim: TabletopSim) -> None:
    sim.reset(seed=3)
    q0 = sim.joint_state().position[:7]
    goal = q0.copy()
    goal[0] += 0.6
    sim.apply_joint_targets(ARM, goal, 2.0)
    sim.advance(0.5)
    with pytest.raises(CommandRejectedError):
        sim.apply_joint_targets(ARM, [math.nan] * 7, 1.0)
    held = sim.joint_state().position[:7].copy()
    sim.advance(1.5)
    after = sim.joint_state().position[:7]
    assert abs(after[0] - goal[0]) > 0.3  # it did not carry on to the old goal
    np.testing.assert_allclose(after, held, atol=0.01)


def test_bad_action_index_is_refused(sim: TabletopSim) -> None:
    with pytest.raises(CommandRejectedError, match="action index"):
        sim.step(len(sim.actions))
