"""Pre-training SAFARI's frozen backbone: a small open_clip CLIP trained contrastively on
randomised tabletop scenes and their captions (`safari_pretrain backbone`).

It stands in for internet pre-training, which no machine here can download: a CLIP whose image
and text towers agree on colours, shapes, spatial relations and the gripper's state, so that the
adapters learn the task on features that mean something. The model is built by open_clip's own
factory from the project's model config (models/*.json) and trained with open_clip's ClipLoss
and cosine schedule; its data comes from pretrain/scenes.py. The result is a safetensors file
loadable like any CLIP weights, a machine-readable card (`<stem>.card.json`: how it was made, its
metrics, its sha256, checked at load) and a human one (`<stem>.md`).

Evaluation, on held-out scenes (seeds disjoint from the training scenes):
- zero-shot retrieval, image->text and text->image, top-1 and top-5 among `retrieval_pool`
  pairs (chance: 1/pool and 5/pool);
- a linear probe (ridge regression) from frozen pooled features to the gripper-relative position
  (x, y) of a named object; the name enters through its text embedding (features: image, text and
  their element-wise product). Chance: predicting the training mean. A randomly initialised model
  of the same architecture is evaluated the same way as a reference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
import yaml
from open_clip_train.scheduler import cosine_lr
from safetensors.torch import save_file
from tqdm import tqdm

from safari_ros.core.backbone import (
    BackboneError,
    check_vit_architecture,
    file_sha256,
    normalize_images,
    resize_center_crop,
    weights_card_path,
)
from safari_ros.core.hparams import learning_config
from safari_ros.pretrain.scenes import (
    SceneRandomiser,
    SceneState,
    caption_for_evaluation,
    caption_for_training,
    scene_facts,
)

__all__ = [
    "BackboneTrainSettings",
    "RenderedScenes",
    "evaluate_clip",
    "load_backbone_data_config",
    "render_scenes",
    "train_backbone",
]

log = logging.getLogger(__name__)

TRAIN_SPLIT, HELDOUT_SPLIT = 0, 1  # the second entry of each scene's seed: disjoint streams


def load_backbone_data_config(cfg: dict[str, Any],
                              path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Scene randomisation and training settings: `path`, else backbone.yaml beside the
    tabletop config in use."""
    p = Path(path) if path else Path(cfg["_path"]).parent / "backbone.yaml"
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError as exc:
        raise BackboneError(f"backbone data config not found: {p}") from exc
    if not isinstance(data, dict) or not {"scenes", "train"} <= set(data):
        raise BackboneError(f"{p} must hold the sections 'scenes' and 'train'")
    return data


# ------------------------------------------------------------------------------------ rendering
@dataclass
class RenderedScenes:
    """Scenes rendered and resized to the model's input size, with the facts of each."""

    images: np.ndarray  # uint8 (N, S, S, 3)
    states: list[SceneState]
    facts: list[list[str]]
    from_cache: bool = False  # read back from the scene cache, not rendered by this run


_worker: SceneRandomiser | None = None


def _init_worker(cfg: dict[str, Any], data_cfg: dict[str, Any]) -> None:
    global _worker
    torch.set_num_threads(1)
    _worker = SceneRandomiser(cfg, data_cfg)


def _render_chunk(args: tuple[int, int, Sequence[int], int]) -> tuple[np.ndarray, list]:
    seed, split, indices, size = args
    assert _worker is not None
    images, states = [], []
    for i in indices:
        state = _worker.sample(np.random.default_rng([seed, split, i]))
        images.append(_worker.render(state))
        states.append(state)
    small = resize_center_crop(torch.from_numpy(np.stack(images)), size)
    return (small * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), states


def render_scenes(cfg: dict[str, Any], data_cfg: dict[str, Any], n: int, split: int, seed: int,
                  size: int, workers: int = 1, progress: bool = True,
                  cache_dir: Path | None = None) -> RenderedScenes:
    """Render scenes 0..n-1 of a split (scene i from seed (seed, split, i): the same scenes on
    any machine and any number of workers), resized as the backbone sees them. With cache_dir,
    a rendering of the same scene settings is read back instead of rendered again."""
    cache = None
    if cache_dir is not None:
        key = json.dumps({"scenes": data_cfg["scenes"], "sim": cfg["sim"],
                          "safety": cfg["safety"], "n": n, "split": split, "seed": seed,
                          "size": size}, sort_keys=True, default=str)
        cache = Path(cache_dir) / f"scenes-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pkl"
        if cache.is_file():
            with cache.open("rb") as f:
                cached = pickle.load(f)
            cached.from_cache = True
            return cached
    rendered = _render(cfg, data_cfg, n, split, seed, size, workers, progress)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(rendered, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache)  # atomic: an interrupted write never leaves a half file behind
    return rendered


def _render(cfg: dict[str, Any], data_cfg: dict[str, Any], n: int, split: int, seed: int,
            size: int, workers: int, progress: bool) -> RenderedScenes:
    chunks = [(seed, split, range(a, min(n, a + 64)), size) for a in range(0, n, 64)]
    bar = tqdm(total=n, desc=f"render {'train' if split == TRAIN_SPLIT else 'heldout'}",
               disable=not progress, unit="scene")
    images, states = [], []
    if workers > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(cfg, data_cfg)) as pool:
            for im, st in pool.map(_render_chunk, chunks):
                images.append(im)
                states += st
                bar.update(len(st))
    else:
        _init_worker(cfg, data_cfg)
        for chunk in chunks:
            im, st = _render_chunk(chunk)
            images.append(im)
            states += st
            bar.update(len(st))
    bar.close()
    return RenderedScenes(np.concatenate(images), states, [scene_facts(s) for s in states])


# ------------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class BackboneTrainSettings:
    """How one backbone run is made (config/backbone.yaml `train`, overridable on the CLI)."""

    images: int
    heldout_images: int
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    seed: int
    retrieval_pool: int
    workers: int = 1
    device: str = "auto"
    progress: bool = True
    cache_dir: str | None = None  # rendered scenes are kept here (pickle) for a re-run

    @classmethod
    def from_config(cls, data_cfg: dict[str, Any], **overrides: Any) -> BackboneTrainSettings:
        """config values, each replaced by an override that is not None."""
        values = dict(data_cfg["train"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # CLIP's convention: no decay on gains, biases, embeddings and the logit scale.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exempt = p.ndim < 2 or "embedding" in name or "logit_scale" in name or "ln" in name
        (no_decay if exempt else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0},
            {"params": decay, "weight_decay": weight_decay}]


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _images_to_input(model: torch.nn.Module, images: np.ndarray,
                     device: torch.device) -> torch.Tensor:
    # The stored images are already at the model's size: resize_center_crop only converts them,
    # exactly as FrozenClip.preprocess does for the stack's camera frames.
    pcfg = model.visual.preprocess_cfg
    x = resize_center_crop(torch.from_numpy(images).to(device), int(model.visual.image_size[0]))
    return normalize_images(x, pcfg["mean"], pcfg["std"])


def _train_loop(model: torch.nn.Module, tokenizer: Any, data: RenderedScenes,
                settings: BackboneTrainSettings, device: torch.device) -> list[float]:
    rng = np.random.default_rng([settings.seed, 2])
    optimizer = torch.optim.AdamW(_param_groups(model, settings.weight_decay), lr=settings.lr,
                                  betas=(0.9, 0.98), eps=1e-6)
    schedule = cosine_lr(optimizer, settings.lr, settings.warmup_steps, settings.steps)
    loss_fn = open_clip.ClipLoss()
    losses: list[float] = []
    model.train()
    bar = tqdm(range(settings.steps), desc="train backbone", disable=not settings.progress)
    n = len(data.images)
    for step in bar:
        schedule(step)
        idx = rng.choice(n, size=min(settings.batch_size, n), replace=False)
        texts = [caption_for_training(data.facts[i], rng) for i in idx]
        out = model(_images_to_input(model, data.images[idx], device),
                    tokenizer(texts).to(device))
        loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # CLIP clamps its temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


# ----------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _embed(model: torch.nn.Module, tokenizer: Any, images: np.ndarray | None,
           texts: Sequence[str] | None, device: torch.device, batch: int = 256) -> torch.Tensor:
    out = []
    if images is not None:
        for a in range(0, len(images), batch):
            out.append(model.encode_image(_images_to_input(model, images[a:a + batch], device)))
    else:
        assert texts is not None
        for a in range(0, len(texts), batch):
            out.append(model.encode_text(tokenizer(list(texts[a:a + batch])).to(device)))
    return F.normalize(torch.cat(out).float(), dim=-1).cpu()


def _retrieval(img: torch.Tensor, txt: torch.Tensor, pool: int) -> dict[str, float]:
    hits = {"image_to_text_top1": [], "image_to_text_top5": [],
            "text_to_image_top1": [], "text_to_image_top5": []}
    for a in range(0, len(img) - pool + 1, pool):
        sim = img[a:a + pool] @ txt[a:a + pool].T
        truth = torch.arange(pool)
        for name, s in (("image_to_text", sim), ("text_to_image", sim.T)):
            rank = (s > s[truth, truth][:, None]).sum(1)  # how many beat the true pair
            hits[f"{name}_top1"].append((rank < 1).float().mean().item())
            hits[f"{name}_top5"].append((rank < 5).float().mean().item())
    out = {k: float(np.mean(v)) for k, v in hits.items()}
    out.update(chance_top1=1.0 / pool, chance_top5=min(1.0, 5.0 / pool), pool=pool,
               queries=len(hits["image_to_text_top1"]) * pool)
    return out


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    return np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ y)


def _probe(img: torch.Tensor, model: torch.nn.Module, tokenizer: Any, data: RenderedScenes,
           device: torch.device) -> dict[str, float]:
    """Ridge probe: (image, name text, product) -> object xy - gripper xy, in cm. The ridge
    strength is chosen on the last quarter of the training scenes, then refit on all of them."""
    rows, names, targets = [], [], []
    for s, state in enumerate(data.states):
        for obj in state.objects:
            rows.append(s)
            names.append(f"the {obj.name}")
            targets.append((obj.position[:2] - state.tcp[:2]) * 100.0)
    txt = _embed(model, tokenizer, None, names, device).numpy()
    im = img.numpy()[rows]
    x = np.concatenate([im, txt, im * txt, np.ones((len(rows), 1))], axis=1)
    y = np.asarray(targets)
    scene = np.asarray(rows)
    n_fit = int(0.8 * len(data.states))
    train = scene < n_fit  # split by scene, not by object
    fit, val = scene < int(0.6 * len(data.states)), train & (scene >= int(0.6 * len(data.states)))
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    mu[-1], sd[-1] = 0.0, 1.0
    xs = (x - mu) / sd

    def error(w: np.ndarray, mask: np.ndarray) -> float:
        return float(np.linalg.norm(xs[mask] @ w - y[mask], axis=1).mean())

    alpha = min((10.0 ** k for k in range(-2, 6)),
                key=lambda a: error(_ridge(xs[fit], y[fit], a), val))
    w = _ridge(xs[train], y[train], alpha)
    chance = np.linalg.norm(y[~train] - y[train].mean(0), axis=1)
    return {"mean_error_cm": error(w, ~train), "chance_mean_error_cm": float(chance.mean()),
            "ridge_alpha": alpha, "train_samples": int(train.sum()),
            "test_samples": int((~train).sum())}


def evaluate_clip(model: torch.nn.Module, tokenizer: Any, data: RenderedScenes, pool: int,
                  device: torch.device) -> dict[str, Any]:
    """Retrieval and probe metrics of a CLIP on held-out scenes."""
    model.eval()
    img = _embed(model, tokenizer, data.images, None, device)
    n_ret = (min(len(data.images), 5 * pool) // pool) * pool
    if n_ret == 0:
        raise BackboneError(f"{len(data.images)} held-out scenes cannot fill a retrieval pool of "
                            f"{pool}")
    txt = _embed(model, tokenizer, None,
                 [caption_for_evaluation(s) for s in data.states[:n_ret]], device)
    return {"retrieval": _retrieval(img[:n_ret], txt, pool),
            "probe": _probe(img, model, tokenizer, data, device)}


# -------------------------------------------------------------------------------- the command
def _create(architecture: str, seed: int, device: torch.device) -> torch.nn.Module:
    check_vit_architecture(architecture)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.create_model(architecture, pretrained=None, output_dict=True,
                                      device=device)


def train_backbone(cfg: dict[str, Any], data_cfg: dict[str, Any], out: str | os.PathLike[str],
                   settings: BackboneTrainSettings, command: Sequence[str] | None = None
                   ) -> dict[str, Any]:
    """Render, train, evaluate and write `<out>` (a .safetensors path) with its two cards.
    The architecture and image size are tabletop.yaml's learning.backbone. Returns the card."""
    t0 = time.monotonic()
    bb = learning_config(cfg).backbone
    if bb.model_config_dir:
        open_clip.add_model_config(Path(bb.model_config_dir))
    out = Path(out)
    if out.suffix != ".safetensors":
        raise BackboneError(f"--out must name a .safetensors file, got {out}")
    device = _device(settings.device)
    torch.manual_seed(settings.seed)
    model = _create(bb.architecture, settings.seed, device)
    size = int(model.visual.image_size[0])
    if size != bb.image_size:
        raise BackboneError(f"{bb.architecture} takes {size} px images but learning.backbone."
                            f"image_size is {bb.image_size}")
    tokenizer = open_clip.get_tokenizer(bb.architecture)
    cache = Path(settings.cache_dir) if settings.cache_dir else None
    train = render_scenes(cfg, data_cfg, settings.images, TRAIN_SPLIT, settings.seed, size,
                          settings.workers, settings.progress, cache)
    heldout = render_scenes(cfg, data_cfg, settings.heldout_images, HELDOUT_SPLIT,
                            settings.seed, size, settings.workers, settings.progress, cache)
    t_render = time.monotonic() - t0
    reference = evaluate_clip(_create(bb.architecture, settings.seed + 1, device), tokenizer,
                              heldout, settings.retrieval_pool, device)
    losses = _train_loop(model, tokenizer, train, settings, device)
    t_train = time.monotonic() - t0 - t_render
    metrics = evaluate_clip(model, tokenizer, heldout, settings.retrieval_pool, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    # float16 halves the file (the 49,408-token embedding table is most of it); CLIP's own
    # released weights are half precision too. Loading casts back to the model's dtype.
    save_file({k: v.detach().to("cpu", torch.float16).contiguous()
               for k, v in model.state_dict().items()}, str(out),
              metadata={"architecture": bb.architecture})
    card = {
        "architecture": bb.architecture,
        "weights": out.name,
        "sha256": file_sha256(out),
        "bytes": out.stat().st_size,
        "image_size": size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "visual_parameters": sum(p.numel() for p in model.visual.parameters()),
        "made_with": {
            "command": " ".join(command) if command else None,
            "settings": {k: v for k, v in asdict(settings).items()
                         if k not in ("progress", "cache_dir")},
            "scene_config_sha256": hashlib.sha256(
                json.dumps(data_cfg, sort_keys=True).encode()).hexdigest(),
            "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
            "torch_threads": torch.get_num_threads(),
            "render_s": round(t_render, 1),
            "scenes_from_cache": bool(train.from_cache and heldout.from_cache),
            "train_s": round(t_train, 1),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "open_clip": open_clip.__version__},
            "date": time.strftime("%Y-%m-%d"),
        },
        "loss": {"first_50": float(np.mean(losses[:50])), "last_50": float(np.mean(losses[-50:]))},
        "heldout": metrics,
        "random_init_reference": reference,
    }
    weights_card_path(out).write_text(json.dumps(card, indent=2) + "\n")
    out.with_suffix(".md").write_text(_card_markdown(card))
    return card


def _card_markdown(card: dict[str, Any]) -> str:
    r, p = card["heldout"]["retrieval"], card["heldout"]["probe"]
    rr, rp = card["random_init_reference"]["retrieval"], card["random_init_reference"]["probe"]
    made = card["made_with"]
    s = made["settings"]
    rows = ["| | this model | random init | chance |", "|---|---|---|---|"]
    for key, label in (("image_to_text_top1", "image->text top-1"),
                       ("image_to_text_top5", "image->text top-5"),
                       ("text_to_image_top1", "text->image top-1"),
                       ("text_to_image_top5", "text->image top-5")):
        chance = r["chance_top1"] if key.endswith("1") else r["chance_top5"]
        rows.append(f"| {label} (pool {r['pool']}) | {r[key]:.3f} | {rr[key]:.3f} | "
                    f"{chance:.3f} |")
    rows.append(f"| probe: gripper-relative xy of a named object, mean error (cm) | "
                f"{p['mean_error_cm']:.1f} | {rp['mean_error_cm']:.1f} | "
                f"{p['chance_mean_error_cm']:.1f} |")
    table = "\n".join(rows)
    cached = " (scenes read from the cache of an earlier run)" if made.get(
        "scenes_from_cache") else ""
    return f"""# {card['architecture']}: SAFARI's tabletop CLIP

A small open_clip CLIP (image and text towers, {card['parameters'] / 1e6:.1f} M parameters,
{card['visual_parameters'] / 1e6:.1f} M in the image tower, {card['image_size']} px images) trained
contrastively on rendered tabletop scenes and captions that describe them (objects, colours,
shapes, spatial relations, the gripper's state and height, pads, the keep-out props), never the
task. It stands in for internet pre-training, which these machines cannot download. Made by
`safari_pretrain backbone` from config/backbone.yaml; SAFARI's stack loads it as its frozen
backbone by default (config/tabletop.yaml, learning.backbone).

- weights: `{card['weights']}`, {card['bytes'] / 1e6:.1f} MB (float16 safetensors)
- sha256: `{card['sha256']}` (checked at every load)
- command: `{made['command']}`
- data: {s['images']} training scenes, {s['heldout_images']} held-out scenes (seeds disjoint),
  seed {s['seed']}; {s['steps']} steps of batch {s['batch_size']}, lr {s['lr']}
- time: rendering {made['render_s']:.0f} s{cached},
  training {made['train_s']:.0f} s on {made['device']} ({made['torch_threads']} threads),
  {made['date']}; torch {made['versions']['torch']}, open_clip {made['versions']['open_clip']}
- contrastive loss: {card['loss']['first_50']:.3f} (first 50 steps) -> {card['loss']['last_50']:.3f}
  (last 50)

## Held-out evaluation

{table}

Retrieval: {r['queries']} queries, each ranked among {r['pool']} held-out pairs. Probe: ridge
regression on frozen pooled image features, the object name's text embedding and their product;
{p['train_samples']} training and {p['test_samples']} test objects, split by scene; chance
predicts the training mean.

## Rebuild

Run the command above from the repository after `source scripts/env.sh` (`--device cuda` on a
GPU); the scenes are seeded, so the data is the same on any machine, the weights equal up to
floating-point differences between devices.
"""

