"""The online SCAPO loop, ROS-free: act with the policy through the real shield, store transitions
of cached prefix tokens in the ReplayBuffer, run SCAPO updates every environment step, and record
each finished episode's measured costs for the Lagrangian.

It is what the node graph does (perception -> policy -> shield -> sim -> learner) in one process,
with the same core objects: ``perceive`` (prefix), ``suffix_and_heads``, ``Shield.decide`` on the
``PrimitivePlanner``'s predicted motion, ``Transition``/``ReplayBuffer`` (with
``refusal_transition`` for hard-limit refusals), ``ScapoLearner``.
Several environments step together so that perception and the policy run one batched forward.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from safari_ros.core.batch import STATE_FIELDS, StateBatch, TransitionBatch
from safari_ros.core.features import proprio_vector
from safari_ros.core.heads import HeadOutputs
from safari_ros.core.losses import entropy
from safari_ros.core.model import depth_lifter
from safari_ros.core.refusals import RefusalMemory
from safari_ros.core.replay import ReplayBuffer, Transition, refusal_transition
from safari_ros.core.scapo import ScapoLearner
from safari_ros.robot.primitives import PrimitivePlanner
from safari_ros.safety.shield import ArmState, Shield
from safari_ros.sim import ENV_ID
from safari_ros.sim.tabletop import TabletopSim

__all__ = ["EpisodeRecord", "OnlineLoop", "ShieldGate", "learned_policy", "make_envs",
           "observe_states"]

CRITICS = ("c", "v_c", "both")


@dataclass
class EpisodeRecord:
    """One finished episode."""

    episode: int  # 0-based, in order of completion
    env_steps: int  # environment steps of this loop when the episode ended (all envs together)
    steps: int
    ret: float
    cost: float  # sum of c_t: steps with a violation
    success: bool
    interventions: int  # proposals the shield replaced
    instruction: str
    lagrange: float | None = None  # lambda after this episode's dual step (learning only)
    updates: int = 0  # SCAPO updates so far
    cost_sources: dict[str, int] = field(default_factory=dict)  # steps each source fired
    # What the policy did: mean entropy (nats) of pi(.|s) at its proposals, and the share of
    # executed actions that move the arm (a policy collapsed onto stop / gripper toggling is 0).
    policy_entropy: float = 0.0
    motion_share: float = 0.0
    # What the shield refused: interventions for a hard limit on the predicted motion (the rest
    # were the learned check C(s, a) >= tau_safe), and what the policy proposed, per action.
    refused_hard: int = 0
    proposed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@torch.no_grad()
def observe_states(model: torch.nn.Module, perceive: Callable[[np.ndarray], torch.Tensor],
                   lift: Callable[[np.ndarray, np.ndarray], np.ndarray],
                   observations: Sequence[dict], instructions: Sequence[str]) -> StateBatch:
    """States of several environment frames, as perception_node builds them (on the CPU, like
    replay): `perceive` the images to the state's tokens, `lift` each depth image
    (core.model.depth_lifter), proprioception and the encoded instructions."""
    n = model.hp.heads.n_joints
    tokens = perceive(np.stack([o["rgb"] for o in observations])).cpu()
    depth = np.stack([lift(o["depth"], o["camera_k"]) for o in observations])
    proprio = np.stack([
        proprio_vector(o["proprio"][:n], o["proprio"][n:2 * n], o["proprio"][2 * n:], n)
        for o in observations
    ])
    instruction = model.encode_instruction(list(instructions)).cpu()
    return StateBatch(tokens, torch.from_numpy(depth), torch.from_numpy(proprio), instruction)


def learned_policy(model: torch.nn.Module) -> Callable[[StateBatch],
                                                      tuple[torch.Tensor, HeadOutputs]]:
    """OnlineLoop's `policy` for a model with heads: pi(.|s) and the heads' outputs (C(s, a)
    for the shield's learned check)."""
    def propose(state: StateBatch) -> tuple[torch.Tensor, HeadOutputs]:
        out = model.suffix_and_heads(state)
        return out.policy_probs, out

    return propose


def make_envs(cfg: dict[str, Any], split: str, n: int) -> list[gym.Env]:
    """n tabletop environments of a split, built from one resolved config."""
    return [gym.make(ENV_ID, config=cfg, split=split).unwrapped for _ in range(n)]


class ShieldGate:
    """The shield in front of each environment, as shield_node runs it (same Shield, planner,
    backup rule), with the method's setting: off, hard limits only, or hard limits + learned check.

    learned_critic picks what the learned check reads: ``c`` = C(s, a); ``v_c`` = (1 - gamma)
    V_C(s), the safety critic's discounted cost rate in [0, 1], the same for every action (a state
    judged unsafe gets the backup); ``both`` = the larger of the two.
    """

    def __init__(self, cfg: dict[str, Any], setting: dict[str, Any], gamma: float, n_envs: int):
        if setting["learned_critic"] not in CRITICS:
            raise ValueError(f"learned_critic must be one of {CRITICS}")
        self.enabled = bool(setting["enabled"])
        self.learned = self.enabled and bool(setting["learned_check"])
        self.critic = setting["learned_critic"]
        self.gamma = gamma
        self.shield = Shield(cfg)
        self.planners = [PrimitivePlanner(cfg) for _ in range(n_envs)]
        self.open = float(cfg["sim"]["gripper_open_m"])
        self.finger_targets = [self.open] * n_envs  # what the shield last commanded, per env

    def reset(self, i: int) -> None:
        """A new episode in env i: the arm is home with the gripper open."""
        self.planners[i].reset()
        self.finger_targets[i] = self.open

    def learned_rows(self, out: HeadOutputs | None, n: int, n_actions: int) -> np.ndarray:
        """(n, A) values the learned check compares with tau_safe; zeros (always pass) when the
        check is off or the method has no learned safety critic."""
        if not self.learned or out is None:
            return np.zeros((n, n_actions))
        c = out.constraint.detach().cpu().numpy()
        v = ((1.0 - self.gamma) * out.v_cost).clamp(0.0, 1.0).detach().cpu().numpy()
        v = np.repeat(v[:, None], n_actions, axis=1)
        return {"c": c, "v_c": v, "both": np.maximum(c, v)}[self.critic]

    def decide(self, i: int, sim: TabletopSim, proposed: int,
               row: np.ndarray) -> tuple[int, bool, bool]:
        """(executed action, intervened, refused for a hard limit) for env i's proposal. Ages are
        0: the harness acts on the frame it just observed, so the watchdog cannot fire here."""
        if not self.enabled:
            return proposed, False, False
        js = sim.joint_state()
        verdict = self.shield.decide(proposed, row, ArmState(js.position[:7], js.velocity[:7],
                                                             self.finger_targets[i]),
                                     planner=self.planners[i])
        if verdict.plan is not None:
            self.finger_targets[i] = verdict.plan.finger_target
        return verdict.executed.index, verdict.intervened, verdict.hard_limit_refusal


def _row(batch: StateBatch, k: int) -> StateBatch:
    return StateBatch(*(getattr(batch, f)[k:k + 1] for f in STATE_FIELDS))


@dataclass
class _Running:
    """Per-environment bookkeeping of the episode in progress."""

    state: StateBatch
    instruction: str
    costs: list[float] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)
    ret: float = 0.0
    interventions: int = 0
    success: bool = False
    entropy_sum: float = 0.0
    motion_steps: int = 0
    refused_hard: int = 0
    proposed: Counter[str] = field(default_factory=Counter)


class OnlineLoop:
    """Episodes in several environments with one policy, a shield gate and (optionally) SCAPO.

    propose: learned policies sample (or take the argmax of) pi(a|s) from ``suffix_and_heads``;
    ``zero_shot`` uses the frozen CLIP's similarity (see models.zero_shot_logits) and no heads.
    With a learner, every environment step adds its transitions and runs ``updates_per_step``
    SCAPO updates per environment (once the replay holds ``warmup`` transitions), and each
    finished episode's costs go to ``learner.record_episode`` (the Lagrange multiplier).
    ``demos`` (n -> n demonstration transitions, e.g. pretrain.DemonstrationSampler.sample) fills
    ScapoConfig.demo_share of every update's batch, as learner_node does.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        envs: Sequence[gym.Env],
        gate: ShieldGate,
        *,
        policy: Callable[[StateBatch], tuple[torch.Tensor, HeadOutputs | None]],
        perceive: Callable[[np.ndarray], torch.Tensor],
        learner: ScapoLearner | None = None,
        replay: ReplayBuffer | None = None,
        sampling: bool = True,
        seed: int = 0,
        warmup: int | None = None,
        demos: Callable[[int], TransitionBatch] | None = None,
    ) -> None:
        if (learner is None) != (replay is None):
            raise ValueError("a learner needs a replay buffer and vice versa")
        self.model, self.envs, self.gate = model, list(envs), gate
        self.policy, self.perceive = policy, perceive
        self.learner, self.replay = learner, replay
        self.demos = demos  # n -> n demonstration transitions (ScapoConfig.demo_share)
        self.sampling = sampling
        self.gen = torch.Generator().manual_seed(seed)
        hp = model.hp
        self.lift = depth_lifter(hp)
        self.batch_size = hp.scapo.batch_size
        self.updates_per_step = hp.scapo.updates_per_step
        self.refusal_penalty = hp.scapo.refusal_penalty
        self.warmup = max(1, warmup if warmup is not None else self.batch_size)
        self.env_steps = 0
        self.updates = 0
        n_actions = len(gate.shield.actions)
        self.refusals = [RefusalMemory(n_actions) for _ in self.envs]  # as policy_node keeps

    # ------------------------------------------------------------------------ perception
    def observe(self, observations: Sequence[dict], instructions: Sequence[str]) -> StateBatch:
        """States of several frames (see `observe_states`)."""
        return observe_states(self.model, self.perceive, self.lift, observations, instructions)

    def _choose(self, probs: torch.Tensor) -> list[int]:
        if self.sampling:
            return torch.multinomial(probs.cpu().float(), 1, generator=self.gen)[:, 0].tolist()
        return probs.argmax(dim=1).tolist()

    def _unrefused(self, ids: list[int], probs: torch.Tensor) -> torch.Tensor:
        """Each env's pi without what the shield refused in its current state."""
        rows = probs.detach().cpu().double().numpy()
        return torch.from_numpy(np.stack([self.refusals[i].apply(r)
                                          for i, r in zip(ids, rows, strict=True)]))

    def _reset(self, i: int, seed: int | None) -> _Running:
        obs, info = self.envs[i].reset(seed=seed)
        self.gate.reset(i)
        self.refusals[i].reset()
        return _Running(self.observe([obs], [info["instruction"]]), info["instruction"])

    def _store(self, run: _Running, nxt: StateBatch, action: int, reward: float, cost: float,
               done: bool, success: bool, prob: float) -> Transition:
        s, s2 = run.state, nxt

        def arr(batch: StateBatch, name: str) -> np.ndarray:
            return getattr(batch, name)[0].numpy()

        transition = Transition(
            *(arr(s, f) for f in STATE_FIELDS), action=action, reward=reward, cost=cost,
            next_tokens=arr(s2, "tokens"), next_depth=arr(s2, "depth"),
            next_proprio=arr(s2, "proprio"), next_instruction=arr(s2, "instruction"),
            done=done, success=success, behaviour_prob=prob,
        )
        self.replay.add(transition)
        return transition

    def _learn(self, n_env_steps: int) -> None:
        if len(self.replay) < self.warmup:
            return
        own, n_demo = self.learner.batch_split(self.demos is not None)
        for _ in range(self.updates_per_step * n_env_steps):
            self.learner.update(self.replay.sample(own),
                                self.demos(n_demo) if n_demo else None)
            self.updates += 1

    # ------------------------------------------------------------------------------ run
    def run(
        self, n_episodes: int, seed: int, on_episode: Callable[[EpisodeRecord], None] | None = None
    ) -> list[EpisodeRecord]:
        """Play n_episodes (spread over the environments); env i's first reset uses seed + i and
        later resets continue its generator. Learns when the loop has a learner."""
        records: list[EpisodeRecord] = []
        n_actions = len(self.gate.shield.actions)
        started = min(n_episodes, len(self.envs))
        running: dict[int, _Running] = {i: self._reset(i, seed + i) for i in range(started)}
        while running:
            ids = sorted(running)
            with torch.no_grad():
                pi, out = self.policy(StateBatch.concat([running[i].state for i in ids]))
            entropies = entropy(pi.clamp_min(1e-12).log()).tolist()
            probs = self._unrefused(ids, pi)  # what is sampled from (the behaviour policy)
            proposed = self._choose(probs)
            rows = self.gate.learned_rows(out, len(ids), n_actions)
            results, refused = [], []
            for k, i in enumerate(ids):
                sim = self.envs[i].sim
                action, intervened, hard = self.gate.decide(i, sim, proposed[k], rows[k])
                self.refusals[i].record(proposed[k], intervened,
                                        self.gate.shield.actions[action].name == "stop")
                refused.append(hard)
                obs, reward, terminated, truncated, info = self.envs[i].step(action)
                results.append((action, intervened, obs, reward, terminated, truncated, info))
            self.env_steps += len(ids)
            nxt = self.observe([r[2] for r in results], [running[i].instruction for i in ids])
            for k, (i, (action, intervened, _, reward, term, _, info)) in enumerate(
                zip(ids, results, strict=True)
            ):
                run = running[i]
                run.costs.append(float(info["cost"]))
                run.sources.update(k for k, v in info["cost_sources"].items() if v)
                run.ret += float(reward)
                run.interventions += int(intervened)
                run.refused_hard += int(refused[k])
                run.proposed[self.gate.shield.actions[proposed[k]].name] += 1
                run.entropy_sum += entropies[k]
                run.motion_steps += int(any(self.gate.shield.actions[action].delta))
                run.success = run.success or bool(info["success"])
                if self.replay is not None:
                    prob = float(probs[k, action])
                    step = self._store(run, _row(nxt, k), action, float(reward),
                                       float(info["cost"]), bool(term), bool(info["success"]), prob)
                    if refused[k] and self.refusal_penalty > 0:  # as learner_node does
                        self.replay.add(refusal_transition(
                            step, proposed[k], float(probs[k, proposed[k]]), self.refusal_penalty))
                run.state = _row(nxt, k)
            if self.learner is not None:
                self._learn(len(ids))
            for i, (*_, term, trunc, _) in zip(ids, results, strict=True):
                if not (term or trunc):
                    continue
                run = running.pop(i)
                lam = self.learner.record_episode(run.costs) if self.learner else None
                n = len(run.costs)
                rec = EpisodeRecord(len(records), self.env_steps, n, run.ret,
                                    float(sum(run.costs)), run.success, run.interventions,
                                    run.instruction, lam, self.updates, dict(run.sources),
                                    run.entropy_sum / n, run.motion_steps / n,
                                    run.refused_hard, dict(run.proposed))
                records.append(rec)
                if on_episode is not None:
                    on_episode(rec)
                if started < n_episodes:
                    started += 1
                    running[i] = self._reset(i, None)
        return records
