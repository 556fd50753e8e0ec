"""Demonstration bags: the oracle's episodes under the live topic names, with violations."""

from __future__ import annotations

from conftest import tiny_config

from safari_ros.bags import BagReader, read_episodes
from safari_ros.config import load_config
from safari_ros.pretrain.demos import rollout
from safari_ros.sim import TabletopSim


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


class _ScriptedDraws:
    """Stands in for rollout's generator: one perturbation, `action`, at step `at`."""

    def __init__(self, at: int, action: int) -> None:
        self.at, self.action, self.calls = at, action, 0

    def random(self) -> float:
        self.calls += 1
        return 0.0 if self.calls == self.at + 1 else 1.0

    def integers(self, n: int) -> int:
        return self.action


def test_a_perturbed_demonstration_shows_the_recovery():
    """A random close_gripper on the way to a lift: the oracle plans again from the state, so
    the very next expert step opens the hand (not a descent with a closed one) and it lifts."""
    cfg = tiny_config()
    sim = TabletopSim(cfg)
    names = [a.name for a in sim.actions]
    try:
        episode = rollout(sim, 3, "lift", _ScriptedDraws(2, names.index("close_gripper")),
                          epsilon=0.5, hold=1, episode_id=0, start_ns=0)
    finally:
        sim.close()
    steps = episode.steps
    assert names[steps[2].action] == "close_gripper" != names[steps[2].proposed_action]
    assert names[steps[3].action] == names[steps[3].proposed_action] == "open_gripper"
    assert episode.success
