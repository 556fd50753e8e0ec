"""policy_node: Observation -> ActionProposal, through the adapted suffix and the heads.

Runs layers k..L of the frozen backbone with the task and safety adapters, then pi(a|s) and
C(s,a) over the configured action set; greedy or sampling, never again an action the shield
replaced by a stop while the arm has not moved since (core/refusals.py). Hot-swaps adapters
when the learner announces a checkpoint, only after a validation gate (sha256, metadata match,
no NaN, validation metrics within the configured bounds); otherwise it keeps the current
adapters and says why.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from safari_msgs.msg import ActionProposal, AdapterCheckpoint, Observation, ShieldDecision
from safari_msgs.srv import LoadAdapters
from safari_ros.core import CheckpointError, StateBatch, build_model, load_checkpoint
from safari_ros.core.refusals import RefusalMemory
from safari_ros.nodes.common import (
    LATCHED_QOS,
    RELIABLE_QOS,
    declare,
    model_parameters,
    node_config,
    observation_state,
    run_node,
)


def gate_metrics(metrics: dict[str, str], bounds: dict[str, float]) -> str:
    """'' when every bounded validation metric is present, finite and within its bound."""
    for key, limit in bounds.items():
        if key not in metrics:
            return f"validation metric {key!r} missing"
        try:
            value = float(metrics[key])
        except ValueError:
            return f"validation metric {key}={metrics[key]!r} is not a number"
        if not math.isfinite(value) or value > limit:
            return f"validation metric {key}={value} beyond its bound {limit}"
    return ""


def output_problem(probs: np.ndarray, constraint: np.ndarray) -> str:
    """'' when pi(.|s) is a finite distribution and C(s, .) finite in [0, 1]."""
    if not (np.isfinite(probs).all() and np.isfinite(constraint).all()):
        return "the model output NaN or inf"
    if probs.sum() <= 0 or np.any(probs < 0) or np.any(constraint < 0) or np.any(constraint > 1):
        return "the model output is not a distribution / probability"
    return ""


class PolicyNode(Node):
    """The adapted model acting on every observation."""

    def __init__(self) -> None:
        super().__init__("policy_node")
        self.cfg = node_config(self)
        t = self.cfg["topics"]
        self.sampling = declare(self, "sampling", True, "sample from pi (else greedy argmax)")
        self.bounds = {"td_error": declare(self, "max_checkpoint_td_error", 1000.0,
                                           "refuse a checkpoint whose TD error exceeds this")}
        checkpoint = declare(self, "checkpoint", "", "adapter checkpoint to start from")
        self.model, self.device = model_parameters(self, self.cfg, build_model)
        self.model.eval()
        self.rng = np.random.default_rng(int(self.get_parameter("seed").value))
        self.version = 0
        self.last_swap = "initial adapters"
        self.logged: set[str] = set()
        self.publisher = self.create_publisher(ActionProposal, t["action_proposal"], RELIABLE_QOS)
        self.diagnostics = self.create_publisher(DiagnosticArray, t["diagnostics"], RELIABLE_QOS)
        self.create_subscription(Observation, t["observation"], self.on_observation, RELIABLE_QOS)
        # what the shield refused in the state the arm is still in (core/refusals.py)
        self.refusals = RefusalMemory(len(self.model.action_names))
        self.instruction_id: int | None = None
        self.proposed_for: tuple[int, int] | None = None  # stamp of the last proposal's frame
        self.create_subscription(ShieldDecision, t["shield_decision"], self.on_decision,
                                 RELIABLE_QOS)
        self.create_subscription(AdapterCheckpoint, t["adapter_checkpoint"], self.on_checkpoint,
                                 LATCHED_QOS)
        self.create_service(LoadAdapters, "/safari/load_adapters", self.on_load)
        self.create_timer(1.0, self.publish_status)
        if checkpoint:
            ok, why = self.swap(checkpoint, None, {}, 0)
            if not ok:
                raise SystemExit(f"policy_node: start-up checkpoint refused: {why}")

    # ------------------------------------------------------------------ acting
    def on_observation(self, msg: Observation) -> None:
        """Propose an action; a malformed or foreign observation is dropped (the shield's
        watchdog then stops the arm)."""
        if msg.backbone_id != self.model.backbone_id:
            self.log_once("backbone", f"observation from backbone {msg.backbone_id!r}, policy "
                                      f"runs {self.model.backbone_id!r}: dropped")
            return
        try:
            tokens, depth, proprio = observation_state(msg, self.model.hp.heads.n_joints)
        except ValueError as exc:
            self.log_once("malformed", f"malformed observation dropped: {exc}")
            return
        with torch.no_grad():
            state = StateBatch(
                torch.from_numpy(tokens)[None], torch.from_numpy(depth)[None],
                torch.from_numpy(proprio)[None],
                self.model.encode_instruction([msg.instruction]).cpu(),
            ).to(self.device)
            out = self.model.suffix_and_heads(state)
        probs = out.policy_probs[0].double().cpu().numpy()
        constraint = out.constraint[0].cpu().numpy()
        problem = output_problem(probs, constraint)
        if problem:  # never guess from a broken output: no proposal, the watchdog stops
            self.log_once("output", f"no proposal: {problem}")
            return
        if msg.instruction_id != self.instruction_id:  # a new task: nothing refused yet
            self.instruction_id = msg.instruction_id
            self.refusals.reset()
        probs = self.refusals.apply(probs)  # what is sampled from, and published as such
        if self.sampling:
            index = int(self.rng.choice(len(probs), p=probs / probs.sum()))
        else:
            index = int(np.argmax(probs))
        self.proposed_for = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        proposal = ActionProposal()
        proposal.header.stamp = self.get_clock().now().to_msg()
        proposal.header.frame_id = msg.header.frame_id
        proposal.observation_stamp = msg.header.stamp
        proposal.action_index = index
        proposal.action_name = self.model.action_names[index]
        proposal.action_names = list(self.model.action_names)
        proposal.probabilities = probs.astype(np.float32)
        proposal.constraint_probabilities = constraint.astype(np.float32)
        proposal.constraint_value = float(constraint[index])
        proposal.adapter_version = self.version
        self.publisher.publish(proposal)

    def on_decision(self, msg: ShieldDecision) -> None:
        """The shield's answer to this node's last proposal (watchdog stops answer none)."""
        if (msg.observation_stamp.sec, msg.observation_stamp.nanosec) != self.proposed_for:
            return
        self.refusals.record(int(msg.proposed_action_index), bool(msg.intervened),
                             msg.executed_action_name == "stop")

    # ------------------------------------------------------------------ adapters
    def swap(self, path: str, sha256: str | None, metrics: dict[str, str],
             version: int) -> tuple[bool, str]:
        """Validation gate, then load; the current adapters stay on any failure."""
        why = gate_metrics(metrics, self.bounds) if metrics else ""
        if not why:
            try:
                load_checkpoint(path, self.model, expected_sha256=sha256 or None)
            except CheckpointError as exc:
                why = str(exc)
        if why:
            self.last_swap = f"refused {path}: {why}"
            self.get_logger().error(f"checkpoint refused, keeping version {self.version}: {why}")
        else:
            self.version = version
            self.last_swap = f"loaded {path} (version {version})"
            self.get_logger().info(self.last_swap)
        # Every outcome reaches /diagnostics at once: with the 1 Hz status alone, the learner's
        # next good checkpoint could replace a refusal before anyone saw it.
        self.publish_status()
        return not why, why

    def on_checkpoint(self, msg: AdapterCheckpoint) -> None:
        """Hot-swap an announced checkpoint (newer than the current one) through the gate."""
        if msg.version <= self.version:
            return
        metrics = {kv.key: kv.value for kv in msg.validation_metrics}
        self.swap(msg.path, msg.sha256, metrics, int(msg.version))

    def on_load(self, request: LoadAdapters.Request, response: LoadAdapters.Response) -> Any:
        """Operator's LoadAdapters: the same gate (sha256 from the sidecar file)."""
        response.success, response.message = self.swap(request.path, None, {}, self.version + 1)
        response.version = self.version
        return response

    def log_once(self, cause: str, text: str) -> None:
        """One warning per distinct cause."""
        if cause not in self.logged:
            self.logged.add(cause)
            self.get_logger().warning(text)

    def publish_status(self) -> None:
        """diagnostic_msgs health: adapter version and the last hot-swap outcome."""
        refused = self.last_swap.startswith("refused")
        status = DiagnosticStatus(
            name="safari/policy", hardware_id="policy_node",
            level=DiagnosticStatus.WARN if refused else DiagnosticStatus.OK,
            message=self.last_swap,
            values=[KeyValue(key="adapter_version", value=str(self.version)),
                    KeyValue(key="backbone_id", value=self.model.backbone_id)])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics.publish(array)


def main(args: list[str] | None = None) -> None:
    """Run the policy node."""
    run_node(PolicyNode, args)


if __name__ == "__main__":
    main()
