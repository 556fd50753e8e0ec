"""learner_node: SCAPO on the robot, from the replay topics.

Assembles transitions from Observation / ActionProposal / ShieldDecision / Feedback (matched by
the camera stamp), or takes safari_msgs/Transition directly (bag replays); keeps the replay
buffer of cached prefix tokens and persists every transition to a rosbag2 MCAP file under
run_dir/replay, so experience survives a restart and feeds offline pre-training. With a
`demonstrations` bag and scapo.demo_share, each update's batch also draws from the demonstrations
the adapters were pre-trained on (their cached features). A proposal the
shield refused for a hard limit is also learned as a penalised, costly transition
(core.replay.refusal_transition), rebuilt from the persisted step on restart, never persisted
itself (a bag holds only what the robot did). A worker
thread runs SCAPO updates (on cuda when available), writes checkpoints and announces them;
LearnerStatus reports progress. Learning pauses and resumes through a service, and only runs
while the shield's mode is `learn`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import KeyValue
from rclpy.node import Node
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import String
from std_srvs.srv import SetBool

from safari_msgs.msg import (
    ActionProposal,
    AdapterCheckpoint,
    Feedback,
    LearnerStatus,
    Observation,
    ShieldDecision,
    Transition,
)
from safari_msgs.srv import SaveAdapters
from safari_ros.bags import BagReader, SplitBagRecorder, recover_split_bags
from safari_ros.bags.typestore import bag_type_name
from safari_ros.core import (
    ReplayBuffer,
    ScapoLearner,
    build_model,
    latest_checkpoint_version,
    load_checkpoint,
    nan_free,
    refusal_transition,
    save_checkpoint,
    versioned_checkpoint_path,
)
from safari_ros.core import Transition as CoreTransition
from safari_ros.nodes.common import (
    LATCHED_QOS,
    RELIABLE_QOS,
    declare,
    model_parameters,
    node_config,
    observation_state,
    run_node,
    stamp_ns,
)
from safari_ros.pretrain.features import DemonstrationSampler, load_demonstrations
from safari_ros.safety.shield import HARD_LIMITS, violates_hard_limit
from safari_ros.streams import AssembledStep, TransitionAssembler

REPLAY_TOPIC_TYPE = bag_type_name("safari_msgs/msg/Transition")
STREAM_QOS = RELIABLE_QOS


def _probability(proposal: ActionProposal | None, index: int) -> float:
    """pi_old(action | s) from the proposal; 1 (no off-policy correction) when unknown."""
    if proposal is None or index >= len(proposal.probabilities):
        return 1.0
    return float(proposal.probabilities[index])


def feedback_problem(msg: Feedback) -> str:
    """'' when reward and cost are finite and the cost is not negative (a negative cost would
    hide violations from J_c)."""
    if not (np.isfinite(msg.reward) and np.isfinite(msg.cost)):
        return f"reward {msg.reward}, cost {msg.cost} not finite"
    if msg.cost < 0:
        return f"negative cost {msg.cost}"
    return ""


class LearnerNode(Node):
    """Replay + SCAPO worker + checkpoints."""

    def __init__(self) -> None:
        super().__init__("learner_node")
        self.cfg = node_config(self)
        t = self.cfg["topics"]
        self.run_dir = Path(declare(self, "run_dir", "runs/latest", "checkpoints and replay bags"))
        self.record = declare(self, "record", True,
                              "persist the replay (Transition messages) as rosbag2 MCAP")
        # The replay is split into bags closed every replay_split_s, each journalled while open
        # (bags.SplitBagRecorder): a learner killed with -9 has its open bag rebuilt from the
        # journal when it restarts, so nothing it wrote is lost.
        self.replay_split_s = declare(self, "replay_split_s", 10.0,
                                      "close the replay bag and start a new one this often (s); "
                                      "0 = one bag per run")
        self.checkpoint_every = declare(self, "checkpoint_every_updates", 50,
                                        "updates between checkpoints")
        status_period = declare(self, "status_period_s", 1.0, "LearnerStatus period (s)")
        self.min_replay = declare(self, "min_replay", 0, "transitions before the first update; "
                                  "0 = one batch")
        self.max_update_rate = declare(self, "max_update_hz", 0.0,
                                       "cap on SCAPO updates per second; 0 = no cap")
        checkpoint = declare(self, "checkpoint", "", "adapter checkpoint to start from "
                             "(e.g. offline pre-training); empty: fresh adapters")
        self.model, self.device = model_parameters(self, self.cfg, build_model)
        start = None
        if checkpoint:
            # The same gate as the policy's: a bad start-up checkpoint stops the node. Loaded
            # before the learner is built: its target critics copy the loaded weights.
            start = load_checkpoint(checkpoint, self.model)
            self.get_logger().info(f"starting from {start.path} (step {start.step})")
        hp = self.model.hp
        self.batch_size = hp.scapo.batch_size
        self.learner = ScapoLearner(self.model, hp.scapo)
        demonstrations = declare(self, "demonstrations", "",
                                 "rosbag2 bags of demonstrations to learn beside "
                                 "(scapo.demo_share), separated by os.pathsep (':'); empty: "
                                 "the robot's own replay only")
        bags = [b for b in demonstrations.split(os.pathsep) if b]
        self.demos = self.load_demonstrations(bags) if bags else None
        self.version = latest_checkpoint_version(self.run_dir / "checkpoints")
        if start is not None:
            if hp.scapo.anchor_kl > 0:  # keep pi near what it started from (anchor_kl)
                self.learner.anchor()
            # A learner checkpoint carries lambda, alpha and the recent episode costs: a restart
            # keeps enforcing the constraint it had learned (a pre-training one carries none).
            resumed = self.learner.restore_dual_state(start.extra)
            if resumed:
                self.get_logger().info(
                    f"resumed the constraint: lambda {self.learner.lagrange.value:.3f} over "
                    f"{len(self.learner.costs.discounted)} recent episodes")
            self.version = max(self.version, start.version)
            # a learner's own checkpoint carries critics that learned online: keep them
            if self.demos is not None and hp.scapo.critic_warmup_steps and not resumed:
                self.warm_up_critics()
        self.replay = ReplayBuffer.from_config(hp.replay, self.model.backbone_id)
        self.lock = threading.Lock()  # replay buffer and counters
        # The model: updates, checkpoints, the dual step. Callbacks must never wait on it: an
        # update on a CPU takes seconds, and the subscriptions' history (depth 10) would
        # overflow meanwhile, losing steps (3 of 4 were lost when instructions took this lock).
        self.model_lock = threading.Lock()
        self.text_lock = threading.Lock()  # the frozen text encoder's cache (callback threads)
        self.recorder_lock = threading.Lock()  # the replay bag: callback threads vs shutdown
        self.assembler = TransitionAssembler()
        self.proposals: dict[int, ActionProposal] = {}
        self.mode = "execute"
        self.paused = False
        self.metrics: dict[str, float] = {}
        self.counts = {"transitions": 0, "violations": 0, "interventions": 0, "episodes": 0}
        self.episode_costs: list[float] = []
        self.successes: deque[bool] = deque(maxlen=hp.scapo.cost_window_episodes)
        self.recorder: SplitBagRecorder | None = None
        self.restore_replay()
        if self.record:
            self.recorder = SplitBagRecorder(self.run_dir / "replay", self.replay_split_s)

        self.status_pub = self.create_publisher(LearnerStatus, t["learner_status"], RELIABLE_QOS)
        self.checkpoint_pub = self.create_publisher(AdapterCheckpoint, t["adapter_checkpoint"],
                                                    LATCHED_QOS)
        self.transition_pub = self.create_publisher(Transition, t["transition"], STREAM_QOS)
        self.create_subscription(Observation, t["observation"], self.on_observation, STREAM_QOS)
        self.create_subscription(ActionProposal, t["action_proposal"], self.on_proposal,
                                 STREAM_QOS)
        self.create_subscription(ShieldDecision, t["shield_decision"], self.on_decision,
                                 STREAM_QOS)
        self.create_subscription(Feedback, t["feedback"], self.on_feedback, STREAM_QOS)
        self.create_subscription(Transition, "/safari/replay_in", self.on_transition, STREAM_QOS)
        self.create_subscription(String, "/safari/mode", self.on_mode, LATCHED_QOS)
        self.create_service(SetBool, "~/set_learning", self.on_set_learning)
        self.create_service(SaveAdapters, "/safari/save_adapters", self.on_save)
        self.create_timer(status_period, self.publish_status)
        self.stop_worker = threading.Event()
        self.worker = threading.Thread(target=self.update_loop, name="scapo", daemon=True)
        self.worker.start()

    # ------------------------------------------------------------------ inputs
    def on_mode(self, msg: String) -> None:
        """The shield's operating mode: updates run only in `learn`."""
        self.mode = msg.data

    def on_observation(self, msg: Observation) -> None:
        """An observation (s of this step, s' of the previous one)."""
        self.consume(self.assembler.add_observation(stamp_ns(msg.header.stamp), msg))

    def on_proposal(self, msg: ActionProposal) -> None:
        """Kept for the behaviour probability of the executed action."""
        self.proposals[stamp_ns(msg.observation_stamp)] = msg
        while len(self.proposals) > 256:
            self.proposals.pop(next(iter(self.proposals)))

    def on_decision(self, msg: ShieldDecision) -> None:
        """What was executed for an observation (watchdog stops carry no observation)."""
        with self.lock:
            self.counts["interventions"] += int(msg.intervened)
        if msg.proposed_action_name:
            self.consume(self.assembler.add_decision(stamp_ns(msg.observation_stamp), msg))

    def on_feedback(self, msg: Feedback) -> None:
        """Reward and cost of the step that started at the feedback's stamp (malformed ones are
        dropped: an infinite cost made the dual step raise and took the node down)."""
        problem = feedback_problem(msg)
        if problem:
            self.get_logger().warning(f"malformed feedback dropped: {problem}",
                                      throttle_duration_sec=5.0)
            return
        self.bookkeep(msg)
        self.consume(self.assembler.add_feedback(stamp_ns(msg.header.stamp), msg))

    def on_transition(self, msg: Transition) -> None:
        """A ready-made transition (a bag replayed onto /safari/replay_in)."""
        self.add(msg, persist=True)

    def consume(self, steps: list[AssembledStep]) -> None:
        """Assembled steps -> Transition messages -> replay (and the episode bookkeeping)."""
        for step in steps:
            fb, decision = step.feedback, step.decision
            msg = Transition(episode_id=fb.episode_id, step=fb.step,
                             observation=step.observation,
                             next_observation=step.next_observation,
                             proposed_action_index=decision.proposed_action_index,
                             executed_action_index=decision.executed_action_index,
                             intervened=decision.intervened, reward=fb.reward, cost=fb.cost,
                             cost_sources=list(fb.cost_sources),
                             cost_active=list(fb.cost_active), done=fb.done,
                             truncated=fb.truncated, success=fb.success)
            msg.header = fb.header
            msg.hard_limit_refusal = decision.intervened and violates_hard_limit(
                {c: getattr(decision, c) for c in HARD_LIMITS})
            proposal = self.proposals.pop(stamp_ns(fb.header.stamp), None)
            msg.behaviour_probability = _probability(proposal, decision.executed_action_index)
            msg.proposed_probability = _probability(proposal, decision.proposed_action_index)
            if self.add(msg, persist=True):  # published once written: the replay has it
                self.transition_pub.publish(msg)

    def bookkeep(self, msg: Feedback) -> None:
        """Violations and episode ends, one dual step on lambda per episode. Counted from every
        Feedback, not from assembled transitions: a step the stack did not answer (policy down,
        watchdog stop) still cost what it cost, and J_c must see it."""
        with self.lock:
            self.counts["violations"] += int(msg.cost > 0)
            self.episode_costs.append(float(msg.cost))
            if msg.done:
                self.counts["episodes"] += 1
                self.successes.append(bool(msg.success))
                with self.model_lock:
                    self.learner.record_episode(self.episode_costs)
                self.episode_costs = []

    def to_core(self, msg: Transition) -> CoreTransition:
        """Transition message -> the core's replay record (ValueError when malformed)."""
        n = self.model.hp.heads.n_joints
        tokens, depth, proprio = observation_state(msg.observation, n)
        next_tokens, next_depth, next_proprio = observation_state(msg.next_observation, n)
        # frozen and never updated by SCAPO: safe beside a running update
        with self.text_lock, torch.no_grad():
            instr = self.model.encode_instruction(
                [msg.observation.instruction, msg.next_observation.instruction]).cpu().numpy()
        return CoreTransition(
            tokens=tokens, depth=depth, proprio=proprio, instruction=instr[0],
            action=int(msg.executed_action_index), reward=float(msg.reward),
            cost=float(msg.cost), next_tokens=next_tokens, next_depth=next_depth,
            next_proprio=next_proprio, next_instruction=instr[1],
            # A time-limit end is not terminal: the value of s' still counts.
            done=bool(msg.done and not msg.truncated), success=bool(msg.success),
            behaviour_prob=float(msg.behaviour_probability))

    def add(self, msg: Transition, persist: bool) -> bool:
        """Into the replay buffer (and, with persist, the replay bag); False when it was not:
        malformed ones are dropped, and one the bag could not take (a full disk) is learned
        from but not kept, each with a log line."""
        if msg.observation.backbone_id != self.model.backbone_id:
            self.get_logger().warning("transition from another backbone dropped")
            return False
        try:
            record = self.to_core(msg)
        except ValueError as exc:
            self.get_logger().warning(f"malformed transition dropped: {exc}")
            return False
        penalty = self.model.hp.scapo.refusal_penalty
        with self.lock:
            self.replay.add(record)
            self.counts["transitions"] += 1
            if msg.hard_limit_refusal and penalty > 0:
                self.replay.add(refusal_transition(
                    record, msg.proposed_action_index, msg.proposed_probability, penalty))
        if persist:
            with self.recorder_lock:
                if self.recorder is not None:
                    try:
                        self.recorder.write_cdr("/safari/transition", REPLAY_TOPIC_TYPE,
                                                serialize_message(msg),
                                                stamp_ns(msg.header.stamp))
                    except OSError as exc:
                        self.get_logger().error(f"replay bag write failed, transition not kept "
                                                f"on disk: {exc}", throttle_duration_sec=5.0)
                        return False
        return True

    def restore_replay(self) -> None:
        """Reload the transitions of earlier runs from run_dir/replay (damaged parts skipped)."""
        folder = self.run_dir / "replay"
        if not folder.is_dir():
            return
        try:
            recovered = recover_split_bags(folder)
        except OSError as exc:
            recovered = 0
            self.get_logger().error(f"could not finish a killed replay bag (its journal is kept "
                                    f"for the next start): {exc}")
        if recovered:
            self.get_logger().warning(
                f"finished the replay bag of a learner that died while recording: {recovered} "
                "transitions recovered from its journal")
        restored = 0
        for bag in sorted(p for p in folder.iterdir() if p.is_dir()):
            try:
                with BagReader(bag, skip_bad=True) as reader:
                    for m in reader.messages(["/safari/transition"]):
                        restored += self.add(deserialize_message(reader.to_cdr(m), Transition),
                                             persist=False)
            except Exception as exc:
                self.get_logger().error(f"replay bag {bag} unreadable, skipped: {exc}")
        self.get_logger().info(f"restored {restored} transitions from {folder}")

    def load_demonstrations(self, bags: list[str]) -> DemonstrationSampler | None:
        """The demonstrations' features (from pre-training's cache when it holds them); a bag
        that is missing or unreadable stops the node: it was asked for."""
        if self.model.hp.scapo.demo_share <= 0:
            self.get_logger().warning(f"demonstrations {bags} not used: scapo.demo_share is 0")
            return None
        started = time.monotonic()
        sampler, cached = load_demonstrations(self.model, bags,
                                              seed=self.model.hp.replay.sampling_seed)
        self.get_logger().info(
            f"learning beside {len(sampler)} demonstration transitions from {len(bags)} bag(s) "
            f"({'cached' if cached else 'computed'} in {time.monotonic() - started:.1f} s)")
        return sampler

    def warm_up_critics(self) -> None:
        """Offline critic pre-training on the demonstrations before the first online update
        (scapo.critic_warmup_steps; ScapoLearner.warm_up_critics)."""
        started = time.monotonic()
        hp = self.model.hp.scapo
        figures = self.learner.warm_up_critics(self.demos.transitions(hp.gamma),
                                               hp.critic_warmup_steps)
        self.get_logger().info(
            f"critics warmed up on the demonstrations in {time.monotonic() - started:.1f} s: "
            + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()))

    # ------------------------------------------------------------------ learning
    def learning_enabled(self) -> bool:
        """Updates run in learn mode, unpaused, with enough replay."""
        need = self.min_replay or self.batch_size
        # Bounded update-to-data ratio: no more updates than updates_per_step per new step.
        budget = self.counts["transitions"] * self.model.hp.scapo.updates_per_step
        return (self.mode == "learn" and not self.paused and len(self.replay) >= need
                and self.learner.updates < budget)

    def update_loop(self) -> None:
        """Worker: SCAPO updates, checkpoints every checkpoint_every updates."""
        while not self.stop_worker.is_set():
            if not self.learning_enabled():
                time.sleep(0.05)
                continue
            start = time.monotonic()
            own, n_demo = self.learner.batch_split(self.demos is not None)
            with self.lock:
                batch = self.replay.sample(own, self.device)
            demos = self.demos.sample(n_demo, self.device) if n_demo else None
            with self.model_lock:
                metrics = self.learner.update(batch, demos)
            self.metrics = metrics
            if self.learner.updates % self.checkpoint_every == 0:
                self.save_and_announce()
            if self.max_update_rate > 0:
                time.sleep(max(0.0, 1.0 / self.max_update_rate - (time.monotonic() - start)))

    def save_and_announce(self, path: str = "") -> AdapterCheckpoint:
        """Write the next checkpoint version and announce it to the policy."""
        self.version += 1
        target = (Path(path) if path
                  else versioned_checkpoint_path(self.run_dir / "checkpoints", self.version))
        with self.model_lock:
            healthy = nan_free(self.model)
            info = save_checkpoint(target, self.model, self.version, self.learner.updates,
                                   extra=self.learner.dual_state())
        msg = AdapterCheckpoint(version=self.version, path=str(info.path.resolve()),
                                sha256=info.sha256, backbone_id=self.model.backbone_id)
        msg.header.stamp = self.get_clock().now().to_msg()
        td = self.metrics.get("loss_q_reward", 0.0)
        msg.validation_metrics = [KeyValue(key="td_error", value=f"{td:.6g}"),
                                  KeyValue(key="nan_free", value=str(healthy).lower()),
                                  KeyValue(key="updates", value=str(self.learner.updates))]
        self.checkpoint_pub.publish(msg)
        self.get_logger().info(f"checkpoint v{self.version}: {info.path}")
        return msg

    # ------------------------------------------------------------------ operator
    def on_set_learning(self, request: SetBool.Request, response: SetBool.Response) -> Any:
        """true: resume learning, false: pause it."""
        self.paused = not request.data
        response.success, response.message = True, "learning " + (
            "resumed" if request.data else "paused")
        return response

    def on_save(self, request: SaveAdapters.Request, response: SaveAdapters.Response) -> Any:
        """Save (and announce) a checkpoint now."""
        try:
            response.checkpoint = self.save_and_announce(request.path)
            response.success, response.message = True, response.checkpoint.path
        except Exception as exc:
            response.success, response.message = False, str(exc)
        return response

    def publish_status(self) -> None:
        """LearnerStatus: updates, lambda, J_c vs delta, losses, KL, counters."""
        m, c = self.metrics, self.counts
        s = LearnerStatus(
            mode="paused" if self.paused else self.mode,
            updates=int(self.learner.updates), transitions_seen=int(c["transitions"]),
            buffer_size=len(self.replay),
            lagrange_multiplier=float(self.learner.lagrange.value),
            episode_cost_estimate=float(self.learner.measured_cost if self.learner.costs.episodes
                                        else 0.0),
            cost_limit=float(self.learner.constraint_limit),
            loss_q_reward=m.get("loss_q_reward", 0.0), loss_q_cost=m.get("loss_q_cost", 0.0),
            loss_v_cost=m.get("loss_v_cost", 0.0), loss_constraint=m.get("loss_constraint", 0.0),
            loss_policy=m.get("loss_policy", 0.0), kl=m.get("kl", 0.0),
            kl_limit=float(self.model.hp.scapo.epsilon_kl),
            rejected_policy_steps=int(self.learner.rejected_policy_steps),
            policy_entropy=m.get("policy_entropy", 0.0),
            entropy_coef=float(self.learner.entropy_temperature.value),
            violations=int(c["violations"]), interventions=int(c["interventions"]),
            episodes=int(c["episodes"]),
            success_rate=float(np.mean(self.successes)) if self.successes else 0.0,
            adapter_version=self.version)
        s.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(s)

    def shutdown(self) -> None:
        """Stop the worker and close the replay bag (it stays readable)."""
        self.stop_worker.set()
        self.worker.join(timeout=30)
        with self.recorder_lock:
            if self.recorder is not None:
                try:
                    self.recorder.close()
                except OSError as exc:  # the journal finishes the bag at the next start
                    self.get_logger().error(f"replay bag not finished: {exc}")
                self.recorder = None


def main(args: list[str] | None = None) -> None:
    """Run the learner node."""
    run_node(LearnerNode, args, before_shutdown=lambda node: node.shutdown(), threads=4)


if __name__ == "__main__":
    main()
