"""The whole stack in separate processes over real DDS: sim -> perception -> policy -> shield ->
sim, with the learner updating and the policy hot-swapping its checkpoints.

One stack (tiny test ViT, 64x64 camera, 10-step episodes) serves the tests of this module, in
file order; the last two kill perception (and restart it) and then the policy.
"""

from __future__ import annotations

import math
import os
import signal
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (scripts/setup.sh)")
pytest.importorskip("safari_msgs", reason="needs the colcon-built safari_msgs")

from diagnostic_msgs.msg import DiagnosticArray, KeyValue  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from nodes.stack_support import start_supervisor, tiny_stack_config  # noqa: E402
from safari_msgs.action import RunEpisode  # noqa: E402
from safari_msgs.msg import (  # noqa: E402
    ActionProposal,
    AdapterCheckpoint,
    Feedback,
    LearnerStatus,
    Observation,
    ShieldDecision,
    Transition,
)
from safari_msgs.srv import SetMode  # noqa: E402
from safari_ros.config import load_config  # noqa: E402
from safari_ros.graph import node_specs  # noqa: E402
from safari_ros.nodes.common import LATCHED_QOS  # noqa: E402
from safari_ros.nodes.shield_node import STOP_SETTLE_S  # noqa: E402

STARTUP_S = 240  # five processes importing torch on two busy cores


class Probe:
    """The test's node: counts every topic of the loop and drives episodes."""

    def __init__(self, cfg: dict) -> None:
        rclpy.init()
        self.node = Node("stack_probe")
        self.cfg = cfg
        t = cfg["topics"]
        self.seen: dict[str, list] = {}
        for key, msg_type in (("color_image", Image), ("joint_states", JointState),
                              ("observation", Observation), ("action_proposal", ActionProposal),
                              ("shield_decision", ShieldDecision),
                              ("controller_command", JointTrajectory), ("feedback", Feedback),
                              ("transition", Transition), ("learner_status", LearnerStatus),
                              ("diagnostics", DiagnosticArray)):
            self.seen[key] = []
            self.node.create_subscription(msg_type, t[key], self._keep(key), 50)
        self.set_mode = self.node.create_client(SetMode, "/safari/set_mode")
        self.episodes = ActionClient(self.node, RunEpisode, "/safari/run_episode")
        self.announce = self.node.create_publisher(AdapterCheckpoint, t["adapter_checkpoint"],
                                                   LATCHED_QOS)

    def _keep(self, key: str):
        def callback(msg, key=key):
            self.seen[key].append((time.monotonic(), msg))
            del self.seen[key][:-400]
        return callback

    def spin_until(self, done, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return done()

    def run_episode(self, timeout: float = 120):
        goal = self.episodes.send_goal_async(RunEpisode.Goal(learn=True))
        assert self.spin_until(goal.done, 30)
        result = goal.result().get_result_async()
        assert self.spin_until(result.done, timeout), "episode did not finish"
        return result.result().result

    def last(self, key: str):
        return self.seen[key][-1][1] if self.seen[key] else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stack")
    config = tiny_stack_config(folder)
    cfg = load_config(config)
    sup = start_supervisor(node_specs(cfg, {"use_sim": "true", "run_dir": str(folder / "run")}),
                           folder / "run", folder / "logs")
    probe = Probe(cfg)
    ready = probe.spin_until(lambda: probe.set_mode.service_is_ready()
                             and probe.episodes.server_is_ready()
                             and probe.last("learner_status") is not None, STARTUP_S)
    if not ready:
        sup.stop()
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}"
                         for p in (folder / "logs").glob("*.log"))
        pytest.fail(f"stack did not come up; dead: {sup.dead()}\n{logs}")
    future = probe.set_mode.call_async(SetMode.Request(mode=SetMode.Request.LEARN))
    assert probe.spin_until(future.done, 10) and future.result().success
    yield sup, probe, folder
    sup.stop()
    probe.node.destroy_node()
    rclpy.shutdown()


def test_closed_loop_learns_and_hot_swaps(stack):
    sup, probe, folder = stack
    results = [probe.run_episode() for _ in range(3)]
    assert all(r.steps > 0 for r in results)

    def learning_sets() -> tuple[set, set, set]:
        """Stamps of the frames the shield decided, the simulator stepped and the learner
        published a transition for."""
        decided = {(m.observation_stamp.sec, m.observation_stamp.nanosec)
                   for _, m in probe.seen["shield_decision"] if m.proposed_action_name}
        stepped = {(m.header.stamp.sec, m.header.stamp.nanosec)
                   for _, m in probe.seen["feedback"]}
        learned = {(m.header.stamp.sec, m.header.stamp.nanosec)
                   for _, m in probe.seen["transition"]}
        return decided, stepped, learned

    def all_learned() -> bool:
        decided, stepped, learned = learning_sets()
        status = probe.last("learner_status")
        return (bool(learned) and {s for s in decided & stepped if s >= min(learned)} <= learned
                and status is not None and status.episodes >= len(results))

    # The learner (niced) publishes the last step's transition, and a status that counts the
    # last episode, when it gets to it: wait for both rather than a fixed time; the checks
    # below say what is missing if they never come.
    probe.spin_until(all_learned, 15.0)
    for key in ("color_image", "observation", "action_proposal", "shield_decision",
                "controller_command", "feedback", "transition"):
        assert len(probe.seen[key]) >= 10, f"too few messages on {key}"
    # Every proposal answers an observation that perception published. (The probe's own
    # subscriptions match their publishers one by one: under load it may miss the first
    # observations while already hearing proposals; it judges those after its first one.)
    obs_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec)
                  for _, m in probe.seen["observation"]}
    answered = [(m.observation_stamp.sec, m.observation_stamp.nanosec)
                for _, m in probe.seen["action_proposal"]]
    assert {a for a in answered if a >= min(obs_stamps)} <= obs_stamps
    # Every step the shield answered becomes one transition: the learner loses none of them
    # while it updates (it once lost 3 of 4 on the full-size model, its callbacks waiting on
    # the update's lock while the subscription queues overflowed).
    decided, stepped, learned = learning_sets()
    # At start-up the learner's subscriptions may match perception's publisher late (DDS
    # discovery, slower on a loaded machine: the first step in CI once, the first three beside
    # a CPU burner): the run's first steps may then lack their observation. None may be lost
    # once the learner has its first step.
    both = decided & stepped
    missed = both - learned
    assert learned and all(s < min(learned) for s in missed), sorted(missed)
    assert len(missed) < len(both) / 4, sorted(missed)
    assert learned == {s for s in both if s >= min(learned)}
    status = probe.last("learner_status")
    assert status.updates > 0 and status.transitions_seen >= 10
    assert 0.0 < status.policy_entropy <= math.log(len(probe.cfg["actions"]["set"])) + 1e-6
    assert status.episodes == 3
    # Every violating step the simulator reported reaches the learner's cost bookkeeping.
    assert status.violations == sum(round(r.episode_cost) for r in results)
    assert probe.spin_until(
        lambda: any(m.adapter_version > 0 for _, m in probe.seen["action_proposal"]), 30
    ), "the policy never hot-swapped a learner checkpoint"
    # The replay is persisted as MCAP bags, the open one with its journal beside it.
    replay = folder / "run" / "replay"
    journals = [j.name for j in replay.glob("*.journal.mcap")]  # first: a bag precedes its own
    bags = sorted(p for p in replay.iterdir() if p.is_dir())
    assert bags and list(bags[0].glob("*.mcap"))
    assert len(journals) <= 1 and {j.removesuffix(".journal.mcap") for j in journals} <= {
        b.name for b in bags}
    assert not sup.dead()


def test_corrupt_checkpoint_is_refused_and_old_adapters_stay(stack):
    _, probe, folder = stack
    good = sorted((folder / "run" / "checkpoints").glob("*.safetensors"))[-1]
    corrupt = folder / "corrupt.safetensors"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    version_before = probe.last("action_proposal").adapter_version
    # Announced with the sha256 of the good file, as a damaged copy would be.
    sha = (good.parent / (good.name + ".sha256")).read_text().split()[0]
    msg = AdapterCheckpoint(version=100000, path=str(corrupt), sha256=sha,
                            backbone_id=probe.last("observation").backbone_id,
                            validation_metrics=[KeyValue(key="td_error", value="0.1")])
    probe.announce.publish(msg)

    def refused() -> bool:
        return any(s.name == "safari/policy" and s.message.startswith("refused")
                   and str(corrupt) in s.message
                   for _, d in probe.seen["diagnostics"] for s in d.status)

    assert probe.spin_until(refused, 20), "the policy did not report the refusal"
    probe.run_episode()
    versions = [m.adapter_version for _, m in probe.seen["action_proposal"][-5:]]
    assert 100000 not in versions and min(versions) >= version_before


def _watchdog_stop_after(probe, killed: float) -> float | None:
    """Arrival time of the stop command that answers the first watchdog decision after
    `killed` (None while there is none)."""
    decision = next((t for t, m in probe.seen["shield_decision"]
                     if t > killed and m.reason == "watchdog"), None)
    if decision is None:
        return None
    for t, traj in probe.seen["controller_command"]:
        point = traj.points[-1]
        settle = point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
        if t > killed and len(traj.points) == 1 and abs(settle - STOP_SETTLE_S) < 1e-6:
            return t
    return None


def _count_since(probe, key: str, since: float) -> int:
    """Messages on `key` that arrived after `since` (the probe keeps the last 400)."""
    return sum(1 for t, _ in probe.seen[key] if t > since)


def _kill_mid_episode_and_time_the_stop(sup, probe, node: str):
    """Start an episode, kill -9 `node` once proposals flow, and check that the watchdog's stop
    reaches the controller topic within the deadline. Returns the episode's goal future."""
    watchdog_s = float(load_config()["safety"]["watchdog_s"])
    goal = probe.episodes.send_goal_async(RunEpisode.Goal(learn=True))
    assert probe.spin_until(goal.done, 30)
    sent = time.monotonic()
    assert probe.spin_until(lambda: _count_since(probe, "action_proposal", sent) > 1, 60)
    os.kill(sup.procs[node].pid, signal.SIGKILL)
    killed = time.monotonic()
    assert probe.spin_until(lambda: _watchdog_stop_after(probe, killed) is not None, 10), \
        "no stop after the kill"
    # The watchdog's deadline runs from the last proposal the shield received; one sent just
    # before the kill may still arrive after it, so the stop is timed from the later of the
    # kill and the last proposal the probe heard. (A stop 1.02 s after it, one whole period
    # late, was the shield's timer re-armed while due: shield_node.on_watchdog.)
    last = max([killed] + [t for t, _ in probe.seen["action_proposal"]])
    latency = _watchdog_stop_after(probe, killed) - last
    assert latency < watchdog_s + 0.5, f"stop came {latency:.2f} s after the last proposal"
    assert probe.spin_until(lambda: node in sup.dead(), 5)
    return goal


def test_killing_perception_brings_stop_and_a_restarted_perception_resumes(stack):
    sup, probe, _ = stack
    goal = _kill_mid_episode_and_time_the_stop(sup, probe, "perception_node")
    # The episode goes on without perception (each tick waits out the simulator's command
    # timeout) and ends; then perception starts again and the next episode runs as before.
    result = goal.result().get_result_async()
    assert probe.spin_until(result.done, 120), "the episode did not end without perception"
    restarted = time.monotonic()
    sup.restart("perception_node")
    for _ in range(4):  # episodes until it has loaded its model and answers frames again
        probe.run_episode()
        if _count_since(probe, "action_proposal", restarted) > 1:
            break
    assert _count_since(probe, "observation", restarted) > 1, "perception did not come back"
    assert _count_since(probe, "action_proposal", restarted) > 1, "no proposals after it"


def test_killing_the_policy_brings_stop_within_the_watchdog_deadline(stack):
    sup, probe, _ = stack
    _kill_mid_episode_and_time_the_stop(sup, probe, "policy_node")
