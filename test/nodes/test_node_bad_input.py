"""Malformed input that once took a node down (found by bench/faults.py): each is refused where
the node reads it, and the node goes on."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (scripts/setup.sh)")
pytest.importorskip("safari_msgs", reason="needs the colcon-built safari_msgs")

from safari_msgs.msg import Feedback, Observation
from safari_ros.nodes.common import observation_state, pack_tokens
from safari_ros.nodes.learner_node import feedback_problem
from safari_ros.nodes.policy_node import output_problem
from safari_ros.streams import ApproximateTimeSync

N_JOINTS = 9


def observation(tokens: np.ndarray) -> Observation:
    msg = Observation()
    pack_tokens(msg, tokens)
    msg.depth_features = [0.5] * 16  # 2 x 2 cells, 4 channels each
    msg.depth_grid = [2, 2]
    msg.joint_state.name = [f"j{i}" for i in range(N_JOINTS)]
    msg.joint_state.position = [0.1] * N_JOINTS
    msg.joint_state.velocity = [0.0] * N_JOINTS
    return msg


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_an_observation_with_non_finite_tokens_is_refused(bad):
    tokens = np.ones((5, 8), np.float32)
    observation_state(observation(tokens), N_JOINTS)  # a good one passes
    tokens[2, 3] = bad
    # The policy once sampled from the NaN probabilities these gave and crashed.
    with pytest.raises(ValueError, match="NaN or inf"):
        observation_state(observation(tokens), N_JOINTS)


def test_a_broken_model_output_gives_no_proposal():
    good = np.array([0.25, 0.75])
    assert output_problem(good, np.array([0.1, 0.9])) == ""
    assert output_problem(np.array([math.nan, 1.0]), np.array([0.1, 0.9]))
    assert output_problem(good, np.array([math.inf, 0.1]))
    assert output_problem(np.zeros(2), np.array([0.1, 0.9]))
    assert output_problem(good, np.array([1.5, 0.1]))


@pytest.mark.parametrize("reward,cost", [(math.nan, 0.0), (0.0, math.inf), (0.0, math.nan),
                                         (0.0, -1.0)])
def test_feedback_with_a_non_finite_or_negative_cost_is_dropped(reward, cost):
    # An infinite cost reached the dual step (lambda update), which raised in the callback.
    assert feedback_problem(Feedback(reward=reward, cost=cost))
    assert feedback_problem(Feedback(reward=-0.5, cost=1.0)) == ""


def test_a_frame_stamped_far_in_the_future_does_not_block_later_frames():
    sync = ApproximateTimeSync("color", ["joints"], tolerance_ns=10)
    sync.add("color", 2**62, "future")  # waits for joints that never come
    matched = []
    for t in range(100, 400, 100):
        sync.add("joints", t, f"j{t}")
        matched += sync.add("color", t, f"c{t}")
    assert [stamp for stamp, _ in matched] == [100, 200, 300]
