"""policy_node over real DDS: a proposal the shield answered with a stop is not proposed again
while the arm has not moved (core/refusals.py), and is again once it has."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (scripts/setup.sh)")
pytest.importorskip("safari_msgs", reason="needs the colcon-built safari_msgs")

from nodes.stack_support import one_node  # noqa: E402
from safari_msgs.msg import ActionProposal, Observation, ShieldDecision  # noqa: E402
from safari_ros.core import build_model  # noqa: E402
from safari_ros.nodes.common import pack_tokens  # noqa: E402

GREEDY = {"nodes": {"policy_node": {"parameters": {"sampling": False}}}}


@pytest.mark.flaky(reruns=1, reruns_delay=2)  # separate processes on two cores
def test_a_refused_proposal_is_not_repeated_until_the_arm_moves(tmp_path):
    with one_node(tmp_path, "policy_node", use_sim=False, sections=GREEDY) as (cfg, sup, node):
        t = cfg["topics"]
        model = build_model(cfg)  # the node's tiny model: same backbone, so same tokens
        rgb = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
        tokens = model.prefix(model.backbone.preprocess(rgb))[0].detach().numpy()
        cells = int(np.prod(model.hp.heads.depth_grid))
        got: list[ActionProposal] = []
        node.create_subscription(ActionProposal, t["action_proposal"], got.append, 10)
        observations = node.create_publisher(Observation, t["observation"], 10)
        decisions = node.create_publisher(ShieldDecision, t["shield_decision"], 10)

        def propose(second: int) -> ActionProposal:
            msg = Observation(backbone_id=model.backbone_id, instruction="lift the red cube",
                              instruction_id=1, depth_grid=list(model.hp.heads.depth_grid))
            msg.header.stamp.sec = second
            pack_tokens(msg, tokens)
            msg.depth_features = [0.1] * (4 * cells)
            msg.joint_state.position = [0.0] * 9
            msg.joint_state.velocity = [0.0] * 9
            got.clear()
            end = time.monotonic() + 60.0  # the node loads torch and its model first
            while time.monotonic() < end:
                observations.publish(msg)
                rclpy.spin_once(node, timeout_sec=0.5)
                assert not sup.dead(), f"policy_node exited; logs in {tmp_path / 'logs'}"
                # only answers to this frame (another graph on the host may share the topics)
                mine = [p for p in got if p.observation_stamp.sec == second]
                if mine:
                    return mine[-1]
            raise AssertionError("no proposal")

        def decide(second: int, proposal: ActionProposal, executed: str) -> None:
            msg = ShieldDecision(proposed_action_index=proposal.action_index,
                                 proposed_action_name=proposal.action_name,
                                 executed_action_name=executed,
                                 intervened=executed != proposal.action_name)
            msg.observation_stamp.sec = second
            decisions.publish(msg)
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.05)

        first = propose(1)
        decide(1, first, "stop")  # refused: the arm stays where it was
        second = propose(2)
        assert second.action_index != first.action_index
        assert second.probabilities[first.action_index] == 0.0
        decide(7, second, "stop")  # a decision on another frame (a watchdog stop): ignored
        decide(2, second, second.action_name)  # it ran: the arm moved, a new state
        assert propose(3).action_index == first.action_index
