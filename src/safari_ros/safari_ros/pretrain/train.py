"""Pre-training of the adapters and heads on bags of demonstrations (single process or DDP).

L_pretrain = lambda1 L_align + lambda2 L_safety + lambda3 L_BC (core.losses.pretrain_loss) with
Adam, first over the heads alone on the frozen backbone's embeddings (warm_up_heads), then over
all trainable parameters, on cached frozen-prefix features (pretrain.features), with a
held-out split by episode. Rank 0 writes the adapter checkpoint (core.save_checkpoint; checked by
validate_checkpoint), a JSON report, an optional loss-curve PNG and, after every epoch, a state
file from which `resume=True` continues exactly where it stopped.

Distributed (torchrun): DistributedDataParallel over the adapters + heads only (the frozen
backbone never enters DDP), gloo on CPU and nccl on GPUs. The batch size is global: each of R
ranks takes batch_size / R samples of the same permutation (DistributedSampler), and the BC term
is rescaled so that the averaged gradient equals the single-process one (its weighted mean would
otherwise be normalised per rank). Feature caching: rank 0 computes what the cache lacks while the
other ranks wait, then every rank loads the cache files (one prefix pass, no duplicate work, and
all ranks see bit-identical features).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DistributedSampler
from tqdm import tqdm

from safari_ros.bags import ReadReport, TopicMap
from safari_ros.core import (
    HeadOutputs,
    SafariModel,
    TransitionBatch,
    build_model,
    pretrain_loss,
    save_checkpoint,
    validate_checkpoint,
)
from safari_ros.core.features import DEPTH_CHANNELS
from safari_ros.core.hparams import PretrainConfig
from safari_ros.core.losses import bc_loss, bc_weights
from safari_ros.pretrain.features import (
    CacheStats,
    FeatureSet,
    default_cache_dir,
    load_bag_features,
)
from safari_ros.pretrain.labelling import MotionLabeller, label_summary
from safari_ros.pretrain.metrics import auroc, expected_calibration_error

__all__ = [
    "CHECKPOINT_NAME",
    "REPORT_NAME",
    "STATE_NAME",
    "PretrainResult",
    "TrainSettings",
    "run_pretrain",
    "split_episodes",
    "warm_up_heads",
]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "adapters.safetensors"
REPORT_NAME = "pretrain_report.json"
STATE_NAME = "pretrain_state.pt"
CURVE_NAME = "loss_curve.png"
EVAL_CHUNK = 256


@dataclass
class TrainSettings:
    """How one pre-training run goes. epochs/batch_size/heldout_fraction/seed are read from
    `learning.pretrain` once PretrainConfig has them (see `from_config`); these are fallbacks."""

    epochs: int = 20
    batch_size: int = 64  # global: split evenly over DDP ranks
    heldout_fraction: float = 0.2  # share of episodes held out for evaluation
    seed: int = 0
    cache_dir: Path = field(default_factory=default_cache_dir)
    skip_bad: bool = False  # passed to read_episodes; skipped input is counted in the report
    resume: bool = False  # continue from the state file in the output directory, if there
    stop_after_epochs: int | None = None  # leave after this many epochs (state file kept)
    plot: bool = False  # loss curve PNG (matplotlib)
    device: str = "auto"  # auto / cpu / cuda / cuda:N (under torchrun: cuda:LOCAL_RANK)
    progress: bool = True  # tqdm bar on rank 0
    version: int = 1  # adapter version written into the checkpoint

    @classmethod
    def from_config(cls, hp: PretrainConfig, **overrides: Any) -> TrainSettings:
        """Defaults from the config's learning.pretrain (where it has the key), then overrides
        that are not None."""
        keys = ("epochs", "batch_size", "heldout_fraction", "seed")
        values = {k: getattr(hp, k) for k in keys if hasattr(hp, k)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "cache_dir" in values:
            values["cache_dir"] = Path(values["cache_dir"])
        return cls(**values)


@dataclass
class PretrainResult:
    """What a run produced (on rank 0; other ranks get the report without files)."""

    report: dict[str, Any]
    checkpoint: Path | None  # None when stopped early or not rank 0
    finished: bool


@dataclass(frozen=True)
class _Dist:
    """This process's place in a torchrun job (world 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup(device_arg: str) -> tuple[_Dist, torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_arg)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local)  # one GPU per rank
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    if world == 1:
        return _Dist(), device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return _Dist(dist.get_rank(), world, local, backend), device


class _Objective(nn.Module):
    """The adapters + heads as one module whose forward is the pre-training loss.

    DDP wraps this, not SafariModel, so only trainable parameters are broadcast and reduced; the
    model is held in a list so that the frozen backbone is not registered as a submodule.
    """

    def __init__(self, model: SafariModel) -> None:
        super().__init__()
        self.adapters = model.adapters
        self.heads = model.heads
        self._model = [model]

    def forward(self, batch: TransitionBatch, bc_scale: float) -> tuple[torch.Tensor, dict]:
        model = self._model[0]
        out = model.suffix_and_heads(batch.state)
        total, terms = pretrain_loss(out, batch, model.hp.pretrain)
        if bc_scale != 1.0:  # see _bc_scale
            extra = bc_loss(out.policy_logits, batch.action, batch.success, out.proposable)
            total = total + (bc_scale - 1.0) * model.hp.pretrain.lambda3_bc * extra
        return total, terms


def _bc_scale(batch: TransitionBatch, d: _Dist, proposable: torch.Tensor) -> float:
    """Factor on this rank's L_BC so that DDP's gradient average equals the gradient of the
    global weighted mean: L_BC is sum(w nll) / sum(w), normalised by the rank's own sum(w)."""
    if d.world == 1:
        return 1.0
    w = bc_weights(batch.action, batch.success, proposable).float().sum()
    total = w.clone()
    dist.all_reduce(total)
    return float(w * d.world / total) if total > 0 else 1.0


def split_episodes(episode: torch.Tensor, fraction: float,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) step indices; whole episodes are held out, chosen by `seed`."""
    ids = torch.unique(episode).numpy()
    n_held = 0
    if fraction > 0 and len(ids) >= 2:
        n_held = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    held = np.random.default_rng(seed).permutation(ids)[:n_held]
    mask = torch.from_numpy(np.isin(episode.numpy(), held))
    return torch.nonzero(~mask).squeeze(1), torch.nonzero(mask).squeeze(1)


@torch.no_grad()
def evaluate(model: SafariModel, data: FeatureSet, device: torch.device) -> dict[str, Any]:
    """Loss terms, action accuracy on expert steps (executed == proposed) and on all steps,
    each action's recall on expert steps (how often pi's argmax is the demonstrated action
    where that action was demonstrated), AUROC and expected calibration error of C(s, a_data)
    against the cost."""
    if len(data) == 0:
        return {}
    model.eval()
    parts = [model.suffix_and_heads(data.batch(torch.arange(i, min(i + EVAL_CHUNK, len(data))),
                                               device).state)
             for i in range(0, len(data), EVAL_CHUNK)]
    model.train()
    per_action = ("action_embedding", "proposable")  # the same for every chunk
    out = HeadOutputs(**{f.name: getattr(parts[0], f.name)
                         if f.name in per_action or getattr(parts[0], f.name) is None
                         else torch.cat([getattr(p, f.name) for p in parts])
                         for f in dataclasses.fields(HeadOutputs)})
    batch = data.batch(device=device)
    _, terms = pretrain_loss(out, batch, model.hp.pretrain)
    action = batch.action.cpu().numpy()
    chosen = out.policy_logits.argmax(1).cpu().numpy()
    expert = (data.action == data.proposed).numpy()
    c = out.constraint.gather(1, batch.action[:, None]).squeeze(1).cpu().numpy()
    costly = data.cost.numpy() > 0.5
    return {
        **terms,
        "steps": len(data),
        "expert_steps": int(expert.sum()),
        "costly_steps": int(costly.sum()),
        "action_accuracy": float((chosen == action)[expert].mean()) if expert.any() else None,
        "action_accuracy_all": float((chosen == action).mean()),
        "action_recall": {model.action_names[a]: float((chosen == a)[expert & (action == a)].mean())
                          for a in np.unique(action[expert])},
        "chance_accuracy": 1.0 / len(model.actions),
        "constraint_auroc": auroc(c, costly),
        "constraint_ece": expected_calibration_error(c, costly),
        **_grounding_error(model, out, batch),
    }


def warm_up_heads(model: SafariModel, data: FeatureSet, steps: int, batch_size: int,
                  seed: int, device: torch.device) -> dict[str, Any]:
    """Linear probing before fine-tuning (LP-FT, Kumar et al. 2022): `steps` Adam updates of
    the heads alone, L_pretrain on the frozen backbone's pooled and patch embeddings of `data`,
    computed once. The adapters start as the identity (zero-initialised up-projections), so
    these are the embeddings the heads meet when the adapters join. A head update costs the
    heads' arithmetic only (~6 ms on 2 cores, against ~150 ms through the adapted blocks), so
    the heads fit their demonstrations before the adapters move, instead of the adapters
    bending the backbone's features towards a random head. (The critics learn from the
    demonstrations, if at all, in the online learner: ScapoLearner.warm_up_critics, on the
    embeddings of the adapters pre-training ends with.)"""
    t0 = time.perf_counter()
    hp = model.hp.pretrain
    heads = model.heads
    with torch.no_grad():
        parts = [model.frozen_pool_and_patches(data.tokens[i:i + EVAL_CHUNK])
                 for i in range(0, len(data), EVAL_CHUNK)]
    pooled = torch.cat([p[0] for p in parts])
    patches = torch.cat([p[1] for p in parts]) if heads.readout is not None else None

    def outputs(rows: torch.Tensor) -> tuple[HeadOutputs, TransitionBatch]:
        batch = data.batch(rows, device)
        r = rows.to(pooled.device)
        return heads(pooled[r], batch.state.depth, batch.state.proprio, batch.state.instruction,
                     patches=None if patches is None else patches[r]), batch

    params = [p for p in heads.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=hp.lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        out, batch = outputs(torch.randint(0, len(data), (batch_size,), generator=gen))
        loss, _ = pretrain_loss(out, batch, hp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    tail = max(1, min(100, steps // 10))
    return {
        "steps": steps, "seconds": time.perf_counter() - t0,
        "loss_first": float(np.mean(losses[:tail])) if losses else None,
        "loss_last": float(np.mean(losses[-tail:])) if losses else None}


def _grounding_error(model: SafariModel, out: HeadOutputs,
                     batch: TransitionBatch) -> dict[str, Any]:
    """Where the readout's first query points (SpatialReadout.locate) against the hindsight
    label of the named object: mean x, y error (m) and the share within 2 cm (half of the
    default lattice step), on the steps that have a label."""
    readout = model.heads.readout
    if readout is None or out.readout_attention is None or batch.ground is None:
        return {}
    labelled = torch.isfinite(batch.ground).all(-1)
    if not labelled.any():
        return {}
    points = batch.state.depth.reshape(len(batch), -1, DEPTH_CHANNELS)
    where = readout.locate(out.readout_attention, points)[:, 0, :2]
    err = (where - batch.ground)[labelled].norm(dim=-1)
    return {"ground_steps": int(labelled.sum()), "ground_error_m": float(err.mean()),
            "ground_within_2cm": float((err < 0.02).float().mean())}


def _batches(sampler: DistributedSampler, per_rank: int) -> Iterator[list[int]]:
    return iter(BatchSampler(sampler, per_rank, drop_last=False))


# ------------------------------------------------------------------------------ state file
def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [name, keys.tolist(), pos, has_gauss, gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_state(path: Path, model: SafariModel, opt: torch.optim.Optimizer,
                progress: dict[str, Any]) -> None:
    """Atomically write trainable parameters, optimizer, progress and RNG states."""
    state = {"trainable": {n: p.detach().cpu() for n, p in model.trainable_named_parameters()},
             "optimizer": opt.state_dict(), "rng": _rng_state(), **progress}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_state(path: Path, model: SafariModel, opt: torch.optim.Optimizer,
                fingerprint: dict[str, Any]) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        raise RuntimeError(
            f"{path} belongs to another run (data, seed, batch size or hyper-parameters differ): "
            f"saved {state.get('fingerprint')}, now {fingerprint}; remove it or drop --resume")
    params = dict(model.trainable_named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    opt.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"])
    return state


def _param_digest(model: SafariModel) -> str:
    h = hashlib.sha256()
    for name, p in model.trainable_named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def _plot(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train"]["loss"] for h in history], label="train")
    if all(h.get("heldout") for h in history):
        ax.plot(epochs, [h["heldout"]["loss"] for h in history], label="held-out")
    ax.set_xlabel("epoch")
    ax.set_ylabel("L_pretrain")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------ the run
def _features(model: SafariModel, bags: list[Path], topic_map: TopicMap, s: TrainSettings,
              d: _Dist, report: ReadReport,
              labeller: MotionLabeller | None) -> tuple[FeatureSet, CacheStats]:
    """Rank 0 fills the cache; the others wait for its word, then read the cache."""
    kwargs = {"cache_dir": s.cache_dir, "skip_bad": s.skip_bad, "labeller": labeller}
    if d.world == 1:
        return load_bag_features(model, bags, topic_map, report=report, **kwargs)
    error: list[str | None] = [None]
    if d.main:
        try:
            result = load_bag_features(model, bags, topic_map, report=report, **kwargs)
        except Exception as exc:
            error[0] = f"{type(exc).__name__}: {exc}"
            dist.broadcast_object_list(error, src=0)  # release the others before raising
            raise
        dist.broadcast_object_list(error, src=0)
        return result
    dist.broadcast_object_list(error, src=0)
    if error[0] is not None:
        raise RuntimeError(f"rank 0 failed to prepare the features: {error[0]}")
    return load_bag_features(model, bags, topic_map, report=report, compute=False, **kwargs)


def run_pretrain(
    cfg: dict[str, Any],
    bags: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: TrainSettings,
    topic_map: TopicMap | None = None,
) -> PretrainResult:
    """Pre-train on `bags`; see the module docstring. Call once per process (torchrun)."""
    s = settings
    d, device = _setup(s.device)
    try:
        return _run(cfg, [Path(b) for b in bags], Path(out_dir), s, topic_map or TopicMap.load(),
                    d, device)
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _run(cfg: dict[str, Any], bags: list[Path], out: Path, s: TrainSettings, tmap: TopicMap,
         d: _Dist, device: torch.device) -> PretrainResult:
    if s.batch_size % d.world:
        raise ValueError(f"batch size {s.batch_size} must divide evenly over {d.world} ranks")
    torch.manual_seed(s.seed)  # adapter/head init; the backbone has its own seed or weights
    model = build_model(cfg, device=device)
    read_report = ReadReport()
    # A topic map without an action stream: logs of a robot that did not run SAFARI, whose
    # actions and costs are labelled from the recorded motion.
    labeller = MotionLabeller(cfg, tmap.labelling) if tmap.labels_from_motion else None
    t0 = time.perf_counter()
    data, cache = _features(model, bags, tmap, s, d, read_report, labeller)
    feature_seconds = time.perf_counter() - t0
    train_idx, held_idx = split_episodes(data.episode, s.heldout_fraction, s.seed)
    if len(train_idx) == 0:
        raise ValueError(f"no training steps in {[str(b) for b in bags]}")
    train, held = data.subset(train_idx), data.subset(held_idx)

    hp = model.hp.pretrain
    opt = torch.optim.Adam(model.trainable_parameters(), lr=hp.lr)
    objective: nn.Module = _Objective(model)
    if d.world > 1:
        objective = DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,  # L_pretrain does not use Q_r and V_C
            broadcast_buffers=False)  # the only buffer, the action text, is fixed
    sampler = DistributedSampler(range(len(train)), num_replicas=d.world, rank=d.rank,
                                 shuffle=True, seed=s.seed)
    per_rank = s.batch_size // d.world
    per_epoch = len(list(_batches(sampler, per_rank)))

    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_NAME
    fingerprint = {"features": cache.files, "seed": s.seed, "batch_size": s.batch_size,
                   "heldout_fraction": s.heldout_fraction,
                   "pretrain": dataclasses.asdict(hp)}
    start_epoch, updates, history = 0, 0, []
    if s.resume and state_path.is_file():
        state = _load_state(state_path, model, opt, fingerprint)
        start_epoch, updates, history = state["epoch"], state["updates"], state["history"]
        log.info("resuming %s after epoch %d", state_path, start_epoch)
    elif s.resume:
        log.info("no state file %s: starting from scratch", state_path)

    warmup: dict[str, Any] | None = None
    if start_epoch == 0 and hp.head_warmup_steps > 0:
        if d.main:  # the other ranks take rank 0's heads
            warmup = warm_up_heads(model, train, hp.head_warmup_steps, s.batch_size, s.seed,
                                   device)
            warmup["heldout"] = evaluate(model, held, device)
            log.info("heads warmed up in %.1f s (%d updates): loss %.3f -> %.3f, held-out "
                     "action accuracy %s", warmup["seconds"], warmup["steps"],
                     warmup["loss_first"], warmup["loss_last"],
                     warmup["heldout"].get("action_accuracy"))
        if d.world > 1:
            for p in model.heads.parameters():
                dist.broadcast(p.data, src=0)

    end_epoch = s.epochs
    if s.stop_after_epochs is not None:
        end_epoch = min(end_epoch, start_epoch + s.stop_after_epochs)
    # disable=None: tqdm turns itself off when stderr is not a terminal
    bar = tqdm(total=s.epochs * per_epoch, initial=start_epoch * per_epoch, unit="batch",
               desc="pretrain", disable=None if d.main and s.progress else True)
    t_train = time.perf_counter()
    updates_before = updates
    for epoch in range(start_epoch, end_epoch):
        sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        seen = 0
        for idx in _batches(sampler, per_rank):
            batch = train.batch(torch.tensor(idx), device)
            loss, terms = objective(batch, _bc_scale(batch, d, model.heads.proposable))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            updates += 1
            seen += len(idx)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss']:.3f}", refresh=False)
        entry = {"epoch": epoch + 1, "train": {k: v / seen for k, v in sums.items()}}
        if d.main:
            entry["heldout"] = evaluate(model, held, device)
            history.append(entry)
            _save_state(state_path, model, opt, {"epoch": epoch + 1, "updates": updates,
                                                 "history": history, "fingerprint": fingerprint})
            log.info("epoch %d: train loss %.4f, held-out %s", epoch + 1, entry["train"]["loss"],
                     {k: entry["heldout"].get(k) for k in ("loss", "action_accuracy",
                                                            "constraint_auroc")})
    bar.close()
    train_seconds = time.perf_counter() - t_train

    digests = [_param_digest(model)]
    if d.world > 1:
        digests = [None] * d.world
        dist.all_gather_object(digests, _param_digest(model))
        if len(set(digests)) != 1:
            raise RuntimeError(f"DDP ranks hold different parameters: {digests}")
    finished = end_epoch >= s.epochs
    report: dict[str, Any] = {
        "finished": finished,
        "epochs_done": end_epoch,
        "resumed_from_epoch": start_epoch if s.resume and start_epoch else None,
        "backbone_id": model.backbone_id,
        "architecture": model.backbone.architecture,
        "split_layer_k": model.split_layer_k,
        "action_names": model.action_names,
        "settings": {**{k: v for k, v in dataclasses.asdict(s).items()
                        if k not in ("cache_dir", "device")},
                     "cache_dir": str(s.cache_dir), "device": str(device)},
        "pretrain_hparams": dataclasses.asdict(hp),
        "distributed": {"world_size": d.world, "backend": d.backend,
                        "per_rank_batch": per_rank, "param_digests": digests},
        "data": {"bags": [str(b) for b in bags], "steps": len(data),
                 "episodes": read_report.episodes, "train_steps": len(train),
                 "heldout_steps": len(held),
                 "train_episodes": int(torch.unique(train.episode).numel()),
                 "heldout_episodes": int(torch.unique(held.episode).numel()),
                 "skipped": dict(read_report.skipped), "problems": read_report.problems,
                 "skipped_per_bag": read_report.by_bag},
        "labels": label_summary(read_report.labels, dict(read_report.skipped),
                                tmap.labelling.residual_threshold) if labeller else None,
        "feature_cache": {**dataclasses.asdict(cache), "seconds": feature_seconds},
        "trainable": model.trainable_share(),
        "timing": {"train_seconds": train_seconds, "updates": updates,
                   "updates_per_second": (updates - updates_before) / max(train_seconds, 1e-9)},
        "head_warmup": warmup,
        "history": history,
        "heldout": history[-1]["heldout"] if history else {},
        # The same on as many training steps as are held out: how well pi fits its own
        # demonstrations, beside how well it carries over to new layouts.
        "train_fit": evaluate(model, train.subset(torch.arange(min(len(train), len(held)))),
                              device) if d.main else {},
    }
    if not d.main:
        return PretrainResult(report, None, finished)
    checkpoint = None
    if finished:
        checkpoint = out / CHECKPOINT_NAME
        info = save_checkpoint(checkpoint, model, version=s.version, step=updates,
                               extra={"source": "pretrain", "heldout": report["heldout"]})
        validate_checkpoint(checkpoint, model, info.sha256)  # what the policy node will check
        report["checkpoint"] = {"path": str(checkpoint), "sha256": info.sha256,
                                "version": info.version}
        if s.plot and history:
            _plot(history, out / CURVE_NAME)
            report["loss_curve"] = str(out / CURVE_NAME)
        (out / REPORT_NAME).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return PretrainResult(report, checkpoint, finished)
