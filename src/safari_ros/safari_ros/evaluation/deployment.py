"""Deployment evaluation of adapter checkpoints, ROS-free: each checkpoint acts greedily through
the stack's shield on the same fresh episode seeds of each task split, nothing learns.

The main job runs it after its online episodes on the pre-trained adapters (v1) and the learner's
final ones, so that its report says what learning online changed, with intervals: success rate
(Wilson), cost and interventions per episode (t), and the gain in success (Newcombe, paired by
seed). It acts through the harness's loop (``OnlineLoop`` with no learner, ``ShieldGate``,
``make_envs``) and loads checkpoints with ``core.checkpoint.load_checkpoint``, the validation the
policy node applies.

Seeds. Deployment episode j of every split and checkpoint resets its environment with seed
``seed_base + j``; the environment draws the scene's layout seed from that
(``layout_seed``). ``check_disjoint`` refuses seeds that the online episodes or the
demonstrations use, so no evaluated scene is one the adapters trained on.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from gymnasium.utils import seeding

from safari_ros.core.checkpoint import load_checkpoint
from safari_ros.core.hparams import learning_config
from safari_ros.core.model import build_model
from safari_ros.evaluation.loop import (
    EpisodeRecord,
    OnlineLoop,
    ShieldGate,
    learned_policy,
    make_envs,
)
from safari_ros.evaluation.models import perceive
from safari_ros.evaluation.stats import mean_ci, newcombe_paired_difference, wilson

__all__ = [
    "STACK_SHIELD",
    "DeploymentSeeds",
    "check_disjoint",
    "check_targets",
    "evaluate_deployment",
    "layout_seed",
]

log = logging.getLogger(__name__)

# The shield of the stack: shield_node checks the hard limits on the predicted motion, then the
# policy's C(s, a) of the proposal against tau_safe (no V_C), as ShieldGate does with this setting.
STACK_SHIELD: dict[str, Any] = {"enabled": True, "learned_check": True, "learned_critic": "c"}
BASELINE, FINAL = "v1", "final"  # the gain is FINAL - BASELINE when both are evaluated


def layout_seed(env_seed: int) -> int:
    """The seed of the scene (task and layout) that ``env.reset(seed=env_seed)`` simulates:
    the environment seeds its generator with gymnasium's ``np_random`` and draws the simulator's
    seed from it (sim/env.py); a test checks that the two agree."""
    return int(seeding.np_random(int(env_seed))[0].integers(2**31))


@dataclass(frozen=True)
class DeploymentSeeds:
    """Environment seeds base, base + 1, ... of the deployment episodes of every split."""

    base: int
    episodes: int

    @property
    def env_seeds(self) -> list[int]:
        """One per episode, the same for every checkpoint (the evaluation is paired by seed)."""
        return list(range(self.base, self.base + self.episodes))

    @property
    def layout_seeds(self) -> list[int]:
        """The simulator seeds those resets give."""
        return [layout_seed(s) for s in self.env_seeds]


def check_disjoint(seeds: DeploymentSeeds, used: Mapping[str, Collection[int]]) -> None:
    """Raise ValueError when a deployment seed (environment or layout seed) is one of the seeds
    another phase uses (`used`: phase name -> its seeds, a range or a set; compared on both
    levels, since a phase may seed the simulator directly, as sim_node does, or a generator)."""
    mine = sorted(set(seeds.env_seeds) | set(seeds.layout_seeds))
    for phase, values in used.items():
        clash = [v for v in mine if v in values]
        if clash:
            raise ValueError(
                f"deployment seeds {clash[:5]} are also seeds of the {phase}: move "
                f"run.deploy_seed_base ({seeds.base}) away from them")


class _SeedTagged(gym.Wrapper):
    """Notes which environment seed each finished episode started from. OnlineLoop reports
    episodes in the order their last steps ran (environments step in index order within a
    tick, and finish in the same order), so `finished` lines up with its records."""

    def __init__(self, env: gym.Env, finished: list[tuple[int, str, int]]) -> None:
        super().__init__(env)
        self.sim = env.unwrapped.sim  # what the shield gate reads the joint state from
        self.finished = finished
        self.episode_seed: int | None = None
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        """Reset and remember the seed."""
        self.episode_seed, self.steps = seed, 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        """Step; a last step records (seed, instruction, steps)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if terminated or truncated:
            self.finished.append((int(self.episode_seed), str(info["instruction"]), self.steps))
        return obs, reward, terminated, truncated, info


def _play(loop: OnlineLoop, seeds: DeploymentSeeds, finished: list[tuple[int, str, int]],
          on_episode: Callable[[EpisodeRecord], None] | None) -> list[tuple[int, EpisodeRecord]]:
    """Every seed once, as (env seed, record) in seed order. Batches of one episode per
    environment: a longer run would hand environment i whichever episode comes next, so the
    seeds two checkpoints saw would depend on how long their episodes lasted."""
    played: dict[int, EpisodeRecord] = {}
    width = len(loop.envs)
    for start in range(0, seeds.episodes, width):
        count = min(width, seeds.episodes - start)
        finished.clear()
        records = loop.run(count, seeds.base + start, on_episode)
        for (seed, instruction, steps), rec in zip(finished, records, strict=True):
            if (instruction, steps) != (rec.instruction, rec.steps):  # the pairing is exact
                raise RuntimeError(f"episode of seed {seed} does not match its record")
            played[seed] = rec
    return [(s, played[s]) for s in seeds.env_seeds]


def behaviour(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """What the policy did over the episodes: the share of executed steps that moved the arm,
    shield refusals per episode for a hard limit and by the learned check, and the share of
    proposals that went to each action (largest first)."""
    proposed: Counter[str] = Counter()
    for r in records:
        proposed.update(r.proposed)
    total = max(1, sum(proposed.values()))
    return {
        "motion_share": mean_ci([r.motion_share for r in records]).to_dict(),
        "refused_hard_per_episode": mean_ci([r.refused_hard for r in records]).to_dict(),
        "refused_learned_per_episode": mean_ci(
            [r.interventions - r.refused_hard for r in records]).to_dict(),
        "proposed_share": {a: n / total for a, n in proposed.most_common()},
    }


def _summary(played: list[tuple[int, EpisodeRecord]]) -> dict[str, Any]:
    records = [r for _, r in played]
    return {
        "success": wilson(sum(r.success for r in records), len(records)).to_dict(),
        "cost_per_episode": mean_ci([r.cost for r in records]).to_dict(),
        "interventions_per_episode": mean_ci([r.interventions for r in records]).to_dict(),
        "steps_per_episode": mean_ci([r.steps for r in records]).to_dict(),
        "behaviour": behaviour(records),
        # `episode` numbers the seeds (a record's own count restarts with every batch)
        "episodes": [{**r.to_dict(), "episode": j, "env_seed": s, "layout_seed": layout_seed(s)}
                     for j, (s, r) in enumerate(played)],
    }


def evaluate_deployment(
    cfg: dict[str, Any],
    checkpoints: Mapping[str, str | None],
    seeds: DeploymentSeeds,
    *,
    splits: Sequence[str] = ("train", "heldout"),
    num_envs: int = 4,
    device: str | torch.device = "cpu",
    init_seed: int = 0,
    on_episode: Callable[[str, str, EpisodeRecord], None] | None = None,
) -> dict[str, Any]:
    """Evaluate each checkpoint (label -> path; None = the fresh adapters the nodes start from
    with `init_seed`) greedily with the stack's shield on `seeds` of every split.

    Returns the report's ``deployment`` section: the protocol, each checkpoint's identity, and per
    split and checkpoint the success rate (Wilson 95%), cost, interventions and steps per episode
    (t 95%) and every episode; with both ``v1`` and ``final``, the paired gain final - v1 in
    success (Newcombe 95%, paired by seed) per split.
    """
    started = time.perf_counter()
    hp = learning_config(cfg)
    torch.manual_seed(init_seed)  # the adapters and heads policy_node builds before any load
    model = build_model(cfg, device=device)
    model.eval()  # as policy_node runs it
    fresh = {n: p.detach().clone() for n, p in model.trainable_named_parameters()}
    width = max(1, min(int(num_envs), seeds.episodes))
    finished: list[tuple[int, str, int]] = []
    envs: dict[str, list[_SeedTagged]] = {}
    results: dict[str, dict[str, Any]] = {split: {} for split in splits}
    identity: dict[str, Any] = {}
    steps = 0
    try:
        for split in splits:  # each keeps its renderer for both checkpoints
            envs[split] = [_SeedTagged(e, finished) for e in make_envs(cfg, split, width)]
        for label, path in checkpoints.items():
            if path:
                info = load_checkpoint(path, model)
                identity[label] = {"path": str(info.path), "version": info.version,
                                   "updates": info.step, "sha256": info.sha256}
            else:
                with torch.no_grad():
                    for name, p in model.trainable_named_parameters():
                        p.copy_(fresh[name])
                identity[label] = {"path": None, "version": 0, "updates": 0,
                                   "sha256": None, "note": f"fresh adapters (seed {init_seed})"}
            for split in splits:
                gate = ShieldGate(cfg, STACK_SHIELD, hp.scapo.gamma, width)
                loop = OnlineLoop(model, envs[split], gate, policy=learned_policy(model),
                                  perceive=lambda rgb: perceive(model, rgb), sampling=False)
                tick = None if on_episode is None else (
                    lambda rec, label=label, split=split: on_episode(label, split, rec))
                played = _play(loop, seeds, finished, tick)
                steps += sum(r.steps for _, r in played)
                results[split][label] = _summary(played)
    finally:
        for split_envs in envs.values():
            for env in split_envs:
                env.close()
    if BASELINE in checkpoints and FINAL in checkpoints:
        for by_label in results.values():
            wins = {label: [e["success"] for e in by_label[label]["episodes"]]
                    for label in (BASELINE, FINAL)}
            by_label["gain"] = newcombe_paired_difference(wins[FINAL], wins[BASELINE]).to_dict()
    wall = time.perf_counter() - started
    return {
        "protocol": {
            "episodes_per_split": seeds.episodes,
            "splits": list(splits),
            "env_seeds": [seeds.base, seeds.base + seeds.episodes - 1],
            "acting": "greedy: argmax of pi(a|s), no learning",
            "shield": "hard limits on the predicted motion, then C(s,a) < tau_safe "
                      f"(tau_safe {float(cfg['safety']['tau_safe'])}), as shield_node",
            "success_interval": "Wilson score, 95%",
            "mean_interval": "Student t, 95%, over episodes",
            "gain_interval": "final - v1: Newcombe square-and-add for paired proportions "
                             "(method 10, 1998), 95%, paired by episode seed",
            "cost_limit_episode": hp.scapo.cost_limit_episode,
            "device": str(model.device),
        },
        "checkpoints": identity,
        "splits": results,
        "env_steps": steps,
        "wall_s": round(wall, 1),
        "s_per_env_step": round(wall / max(1, steps), 4),
    }


def check_targets(section: dict[str, Any], success: Mapping[str, float]) -> dict[str, Any]:
    """The issue's acceptance checks on the final adapters, added to `section` as ``targets``
    (name -> text and whether it is met): success per split at least `success[split]`, mean
    cost per episode at most d, and a gain over v1 whose interval lies above zero. Reported,
    never tuned to: the seeds are the evaluation's."""
    proto, splits = section["protocol"], section["splits"]
    d = float(proto["cost_limit_episode"])
    targets: dict[str, Any] = {}
    for split in proto["splits"]:
        final = splits[split].get(FINAL)
        if final is None:
            continue
        rate = final["success"]["mean"]
        if split in success:
            targets[f"{split}_success"] = {
                "text": f"final success on {split} {rate:.2f} >= {success[split]:.2f}",
                "met": rate >= float(success[split])}
        cost = final["cost_per_episode"]["mean"]
        targets[f"{split}_cost"] = {"text": f"final cost per episode on {split} {cost:.2f} <= "
                                            f"d = {d:g}", "met": cost <= d}
        gain = splits[split].get("gain")
        if gain is not None:
            targets[f"{split}_gain"] = {
                "text": f"gain over v1 on {split} {gain['mean']:+.2f} with 95% interval "
                        f"[{gain['low']:+.2f}, {gain['high']:+.2f}] above 0",
                "met": gain["low"] > 0}
    section["targets"] = targets
    return targets
