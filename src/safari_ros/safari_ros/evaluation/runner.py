"""One run of the harness: build the method's model, learn online, deploy on each split, measure.

A run's folder holds ``config.yaml`` (its resolved config) and ``metrics.json`` (per-episode
records, deployment episodes, scalar metrics and compute).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from safari_ros.core.hparams import learning_config
from safari_ros.core.replay import ReplayBuffer
from safari_ros.core.scapo import ScapoLearner, resolve_delta
from safari_ros.evaluation.compute import PeakMemory, estimate_training_memory_mb
from safari_ros.evaluation.loop import (
    EpisodeRecord,
    OnlineLoop,
    ShieldGate,
    learned_policy,
    make_envs,
)
from safari_ros.evaluation.models import (
    CnnSafariModel,
    FullFinetuneModel,
    build_method_model,
    perceive,
    trainable_count,
    zero_shot_logits,
)
from safari_ros.evaluation.settings import RunConfig
from safari_ros.evaluation.stats import steps_to_target
from safari_ros.sim.tabletop import COST_SOURCES

__all__ = ["run_one", "summarise"]

TRAIN_SEED_BASE = 1000  # env i of a run with seed s starts at TRAIN_SEED_BASE * s + i
EVAL_SEED_BASE = 1_000_000  # deployment episodes: disjoint from training, same for every method


def _policy(model: torch.nn.Module, kind: str):
    """The acting rule: pi(a|s) of the heads, or CLIP's zero-shot scores (no heads)."""
    if kind == "zero_shot":
        return lambda state: (torch.softmax(zero_shot_logits(model, state), dim=-1), None)
    if kind != "learned":
        raise ValueError(f"method.policy must be 'learned' or 'zero_shot', not {kind!r}")
    return learned_policy(model)


def _memory_estimate_mb(model: torch.nn.Module, batch_size: int) -> float:
    """Training memory estimate: gradients flow through the whole tower (full fine-tuning),
    the adapted suffix (adapters), or a small CNN (activations negligible)."""
    if isinstance(model, CnnSafariModel):
        return estimate_training_memory_mb(trainable_count(model), batch_size, 0, 0, 0)
    bb = model.backbone
    layers = bb.num_layers if isinstance(model, FullFinetuneModel) else (
        bb.num_layers - model.split_layer_k)
    return estimate_training_memory_mb(
        trainable_count(model), batch_size, bb.num_tokens, bb.width, layers)


def _rate(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarise(
    train: list[EpisodeRecord], deploy: dict[str, list[EpisodeRecord]], protocol: dict[str, Any]
) -> dict[str, float | int | None]:
    """Scalar metrics of one run (the report aggregates them over seeds)."""
    window = int(protocol["success_window"])
    success = [float(r.success) for r in train]
    metrics: dict[str, float | int | None] = {
        "train_success_final": _rate(success[-window:]),
        "train_cost_cumulative": float(sum(r.cost for r in train)),
        "train_cost_per_episode": _rate([r.cost for r in train]),
        "train_interventions_per_episode": _rate([r.interventions for r in train]),
        "steps_to_target": steps_to_target(
            success, [r.env_steps for r in train], window, float(protocol["target_success"])),
        "train_env_steps": train[-1].env_steps if train else 0,
        "train_entropy_first": _rate([r.policy_entropy for r in train[:window]]),
        "train_entropy_final": _rate([r.policy_entropy for r in train[-window:]]),
        "train_motion_share_first": _rate([r.motion_share for r in train[:window]]),
        "train_motion_share_final": _rate([r.motion_share for r in train[-window:]]),
        "train_return_first": _rate([r.ret for r in train[:window]]),
        "train_return_final": _rate([r.ret for r in train[-window:]]),
    }
    # the tabletop's sources always (0 when none fired), then any other the domain reported
    sources = dict.fromkeys([*COST_SOURCES, *(k for r in train for k in r.cost_sources)])
    for name in sources:
        metrics[f"train_violations_{name}"] = float(
            sum(r.cost_sources.get(name, 0) for r in train))
    for split, records in deploy.items():
        metrics[f"deploy_{split}_success"] = _rate([float(r.success) for r in records])
        metrics[f"deploy_{split}_cost_per_episode"] = _rate([r.cost for r in records])
        metrics[f"deploy_{split}_interventions_per_episode"] = _rate(
            [r.interventions for r in records])
    return metrics


def run_one(
    rc: RunConfig, out_dir: Path, device: torch.device, progress: bool = True, label: str = ""
) -> dict[str, Any]:
    """Run one (configuration, seed); returns (and writes) its result dict."""
    cfg, method, proto = rc.resolved["tabletop"], rc.resolved["method"], rc.resolved["protocol"]
    run_dir = out_dir / "runs" / rc.name / f"seed{rc.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(rc.resolved, sort_keys=False))
    result: dict[str, Any] = {"name": rc.name, "group": rc.group, "seed": rc.seed,
                              "status": "ok", "reason": "", "overrides": rc.overrides}

    torch.manual_seed(rc.seed)
    mem = PeakMemory(device)
    mem.start()
    t0 = time.perf_counter()
    hp = learning_config(cfg)
    model = build_method_model(cfg, method, device)
    learned = method["policy"] == "learned"
    result["backbone_id"] = model.backbone_id
    result["trainable_params"] = trainable_count(model) if learned else 0
    estimate = _memory_estimate_mb(model, hp.scapo.batch_size) if learned else 0.0
    budget = float(proto["memory_budget_mb"])
    if device.type == "cuda":
        budget = min(budget, torch.cuda.mem_get_info(device)[0] / 2**20)
    result["memory_estimate_mb"] = estimate
    if estimate > budget:
        result.update(status="skipped", reason=(
            f"estimated training memory {estimate:.0f} MiB exceeds the budget {budget:.0f} MiB"))
        (run_dir / "metrics.json").write_text(json.dumps(result, indent=1))
        return result

    learner = ScapoLearner(model, hp.scapo) if learned else None
    replay = ReplayBuffer.from_config(hp.replay, model.backbone_id) if learned else None
    sampling = bool(cfg["nodes"]["policy_node"]["parameters"].get("sampling", True))  # as deployed
    n_envs = int(proto["num_envs"])
    total = int(proto["train_episodes"]) + int(proto["eval_episodes"]) * len(proto["eval_splits"])
    bar = tqdm(total=total, desc=label or f"{rc.name} seed {rc.seed}", file=sys.stderr,
               disable=not progress, leave=False, dynamic_ncols=True)

    def tick(phase: str):
        def on_episode(r: EpisodeRecord) -> None:
            lam = "" if r.lagrange is None else f" lambda={r.lagrange:.2f}"
            bar.set_postfix_str(f"{phase} ep{r.episode} success={int(r.success)} "
                                f"cost={r.cost:.0f} shield={r.interventions}{lam}")
            bar.update()
        return on_episode

    def loop_for(split: str, with_learner: bool) -> OnlineLoop:
        envs = make_envs(cfg, split, n_envs)
        gate = ShieldGate(cfg, method["shield"], hp.scapo.gamma, n_envs)
        return OnlineLoop(
            model, envs, gate, policy=_policy(model, method["policy"]),
            perceive=lambda rgb: perceive(model, rgb),
            learner=learner if with_learner else None, replay=replay if with_learner else None,
            sampling=sampling, seed=rc.seed, warmup=proto["warmup_transitions"])

    try:
        train_loop = loop_for("train", learned)
        train = train_loop.run(int(proto["train_episodes"]), TRAIN_SEED_BASE * rc.seed,
                               tick("learn"))
        train_s = time.perf_counter() - t0
        deploy = {}
        for split in proto["eval_splits"]:
            eval_loop = loop_for(split, False)
            deploy[split] = eval_loop.run(int(proto["eval_episodes"]),
                                          EVAL_SEED_BASE + TRAIN_SEED_BASE * rc.seed,
                                          tick(f"deploy:{split}"))
            for env in eval_loop.envs:
                env.close()
        for env in train_loop.envs:
            env.close()
    finally:
        bar.close()

    result["metrics"] = summarise(train, deploy, proto) | {
        "wall_clock_s": time.perf_counter() - t0,
        "train_wall_clock_s": train_s,
        "peak_memory_mb": mem.increase_mb(),
        "trainable_params": result["trainable_params"],
        "updates": train_loop.updates,
        "final_lambda": learner.lagrange.value if learner else None,
    }
    result["compute"] = {"device": str(device), "memory_scope": mem.scope,
                         "peak_memory_absolute_mb": mem.peak_mb(),
                         "delta": resolve_delta(hp.scapo),
                         "cost_limit_episode": hp.scapo.cost_limit_episode}
    if learner is not None:
        result["compute"]["rejected_policy_steps"] = learner.rejected_policy_steps
        result["compute"]["dropped_policy_steps"] = learner.dropped_policy_steps
    result["train"] = [r.to_dict() for r in train]
    result["deploy"] = {s: [r.to_dict() for r in recs] for s, recs in deploy.items()}
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=1))
    return result
