"""Demonstration bags: the oracle's episodes under the live topic names, with violations."""

from __future__ import annotations

from safari_ros.bags import BagReader, read_episodes
from safari_ros.config import load_config


def test_demo_bag_holds_episodes_with_costs_and_perturbations(demo_bag):
    topics = load_config()["topics"]
    with BagReader(demo_bag) as bag:
        found = bag.topics
    assert found[topics["color_image"]] == "sensor_msgs/msg/Image"
    assert found[topics["depth_image"]] == "sensor_msgs/msg/Image"
    assert found[topics["joint_states"]] == "sensor_msgs/msg/JointState"
    assert found[topics["instruction"]] == "std_msgs/msg/String"
    assert found[topics["shield_decision"]] == "safari_msgs/msg/ShieldDecision"
    assert found[topics["feedback"]] == "safari_msgs/msg/Feedback"

    episodes = read_episodes(demo_bag)
    assert len(episodes) == 36
    steps = [s for e in episodes for s in e.steps]
    assert steps[0].rgb.shape == (32, 32, 3) and steps[0].depth.shape == (32, 32)
    assert {e.instruction.split()[0] for e in episodes} == {"push", "touch", "lift"}
    costly = [s for s in steps if s.cost > 0]
    assert costly and all(any(s.cost_sources.values()) for s in costly)
    assert any(s.action != s.proposed_action for s in steps)  # perturbed steps are marked
    assert 0 < sum(e.success for e in episodes) < len(episodes) + 1
    assert all(e.steps[-1].done for e in episodes)
