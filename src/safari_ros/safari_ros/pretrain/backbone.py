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

import dataclasses
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
from safari_ros.core.hparams import RegionOfInterest, learning_config
from safari_ros.pretrain.scenes import (
    PROP_WORDS,
    SceneRandomiser,
    SceneState,
    caption_for_evaluation,
    caption_for_training,
    patch_label_fractions,
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
    """Scenes rendered (the ROI's window) and resized to the model's input size, with the
    facts of each and what each of its patches shows."""

    images: np.ndarray  # uint8 (N, S, S, 3)
    states: list[SceneState]  # what the window shows
    facts: list[list[str]]
    phrases: list[list[str]]  # label phrases of each scene (pretrain/scenes.py)
    patch_labels: list[np.ndarray]  # (P, len(phrases)) float16: each patch's share per label
    from_cache: bool = False  # read back from the scene cache, not rendered by this run


_worker: SceneRandomiser | None = None


def _init_worker(cfg: dict[str, Any], data_cfg: dict[str, Any]) -> None:
    global _worker
    torch.set_num_threads(1)
    _worker = SceneRandomiser(cfg, data_cfg)


def _render_chunk(args: tuple[int, int, Sequence[int], int, int, RegionOfInterest | None]
                  ) -> tuple[np.ndarray, list, list, list]:
    seed, split, indices, size, grid, roi = args
    assert _worker is not None
    images, states, phrases, labels = [], [], [], []
    for i in indices:
        state = _worker.sample(np.random.default_rng([seed, split, i]))
        rgb, seen, words, label_map = _worker.render_labelled(state, roi)
        images.append(rgb)
        states.append(seen)
        phrases.append(words)
        labels.append(patch_label_fractions(label_map, len(words), size, grid)
                      .astype(np.float16))
    small = resize_center_crop(torch.from_numpy(np.stack(images)), size)
    return (small * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), states, \
        phrases, labels


def render_scenes(cfg: dict[str, Any], data_cfg: dict[str, Any], n: int, split: int, seed: int,
                  size: int, grid: int, workers: int = 1, progress: bool = True,
                  cache_dir: Path | None = None) -> RenderedScenes:
    """Render scenes 0..n-1 of a split (scene i from seed (seed, split, i): the same scenes on
    any machine and any number of workers), cropped to learning.backbone.roi and resized as the
    backbone sees them, with patch labels on its grid x grid patches. With cache_dir, a
    rendering of the same scene settings is read back instead of rendered again."""
    cache = None
    roi = learning_config(cfg).backbone.roi
    if cache_dir is not None:
        key = json.dumps({"scenes": data_cfg["scenes"], "sim": cfg["sim"],
                          "safety": cfg["safety"], "n": n, "split": split, "seed": seed,
                          "size": size, "grid": grid, "roi": roi, "labels": 1},
                         sort_keys=True, default=str)
        cache = Path(cache_dir) / f"scenes-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pkl"
        if cache.is_file():
            with cache.open("rb") as f:
                cached = pickle.load(f)
            cached.from_cache = True
            return cached
    rendered = _render(cfg, data_cfg, n, split, seed, size, grid, roi, workers, progress)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(rendered, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache)  # atomic: an interrupted write never leaves a half file behind
    return rendered


def _render(cfg: dict[str, Any], data_cfg: dict[str, Any], n: int, split: int, seed: int,
            size: int, grid: int, roi: RegionOfInterest | None, workers: int,
            progress: bool) -> RenderedScenes:
    chunks = [(seed, split, range(a, min(n, a + 64)), size, grid, roi) for a in range(0, n, 64)]
    bar = tqdm(total=n, desc=f"render {'train' if split == TRAIN_SPLIT else 'heldout'}",
               disable=not progress, unit="scene")
    images, states, phrases, labels = [], [], [], []

    def collect(results: Any) -> None:
        for im, st, ph, lab in results:
            images.append(im)
            states.extend(st)
            phrases.extend(ph)
            labels.extend(lab)
            bar.update(len(st))

    if workers > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(cfg, data_cfg)) as pool:
            collect(pool.map(_render_chunk, chunks))
    else:
        _init_worker(cfg, data_cfg)
        collect(map(_render_chunk, chunks))
    bar.close()
    return RenderedScenes(np.concatenate(images), states, [scene_facts(s) for s in states],
                          phrases, labels)


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
    dense_weight: float = 0.0  # weight of the patch-to-phrase loss beside CLIP's
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


def image_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """open_clip's image tower, keeping its patches: the pooled embedding (B, E) and the patch
    embeddings (B, P, E), both through the final norm and projection (FrozenClip's
    pool_and_patches reads them the same way)."""
    v = model.visual
    pooled, tokens = v._pool(v.transformer(v._embeds(x)))
    if v.proj is not None:
        pooled, tokens = pooled @ v.proj, tokens @ v.proj
    return pooled, tokens


def dense_loss(patches: torch.Tensor, phrases: torch.Tensor, targets: torch.Tensor,
               logit_scale: torch.Tensor) -> torch.Tensor:
    """Patch-to-phrase cross-entropy, both ways, on the patch-phrase similarities (B, P, K) at
    CLIP's temperature (patches (B, P, E), the batch's phrases (K, E), targets (B, P, K): the
    share of each patch each phrase's thing covers, rows summing to 1):
    - what: each patch's softmax over the phrases, towards the shares of its pixels;
    - where: each shown phrase's softmax over the image's patches, towards the thing's pixels
      spread over the patches. This is the readout's own operation (a phrase attending over
      the patches, SpatialReadout): its soft-argmax then lands on the thing's centre, between
      patch centres, not on the nearest patch."""
    logits = logit_scale * F.normalize(patches, dim=-1) @ F.normalize(phrases, dim=-1).T
    what = -(targets * logits.log_softmax(-1)).sum(-1).mean()
    mass = targets.sum(1, keepdim=True)  # (B, 1, K): how much of the image each thing covers
    shown = mass[:, 0, :] > 0
    where = -((targets / mass.clamp_min(1e-6)) * logits.log_softmax(1)).sum(1)[shown].mean()
    return what + where


def _dense_targets(data: RenderedScenes, idx: np.ndarray) -> tuple[list[str], torch.Tensor]:
    """The batch's distinct label phrases and each patch's target shares over them."""
    vocab = sorted({p for i in idx for p in data.phrases[i]})
    col = {p: k for k, p in enumerate(vocab)}
    n_patches = data.patch_labels[idx[0]].shape[0]
    targets = torch.zeros(len(idx), n_patches, len(vocab))
    for b, i in enumerate(idx):
        cols = [col[p] for p in data.phrases[i]]
        targets[b][:, cols] += torch.from_numpy(data.patch_labels[i].astype(np.float32))
    return vocab, targets


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
        pooled, patches = image_features(model, _images_to_input(model, data.images[idx],
                                                                 device))
        text = model.encode_text(tokenizer(texts).to(device))
        scale = model.logit_scale.exp()
        loss = loss_fn(F.normalize(pooled, dim=-1), F.normalize(text, dim=-1), scale)
        if settings.dense_weight > 0:
            vocab, targets = _dense_targets(data, idx)
            phrases = model.encode_text(tokenizer(vocab).to(device))
            loss = loss + settings.dense_weight * dense_loss(patches, phrases,
                                                             targets.to(device), scale)
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


@torch.no_grad()
def _localisation(model: torch.nn.Module, tokenizer: Any, data: RenderedScenes,
                  device: torch.device) -> dict[str, float]:
    """Where the patch embeddings put a named object: for each object a scene shows, the patch
    most similar to its phrase ("a red cube") against the object's pixels. hit: that patch is
    the one the object covers most; error: its distance (in patches) from the centroid of the
    object's pixels. Chance: a patch drawn uniformly."""
    names = sorted({p for ph in data.phrases for p in ph[3:]
                    if not p.endswith("square pad") and p not in PROP_WORDS.values()})
    text = dict(zip(names, _embed(model, tokenizer, None, names, device), strict=True))
    grid = math.isqrt(data.patch_labels[0].shape[0])
    centres = np.stack(np.divmod(np.arange(grid * grid), grid), axis=1).astype(float)
    hits, errors, chance = [], [], []
    for a in range(0, len(data.images), 256):
        _, patches = image_features(model, _images_to_input(model, data.images[a:a + 256],
                                                            device))
        patches = F.normalize(patches.float(), dim=-1).cpu()
        for j in range(patches.shape[0]):
            labels = data.patch_labels[a + j].astype(np.float32)
            for k, phrase in enumerate(data.phrases[a + j]):
                if phrase not in text or labels[:, k].sum() <= 0:
                    continue
                best = int(torch.argmax(patches[j] @ text[phrase]))
                share = labels[:, k] / labels[:, k].sum()
                centroid = share @ centres
                hits.append(best == int(np.argmax(labels[:, k])))
                errors.append(float(np.linalg.norm(centres[best] - centroid)))
                chance.append(float(np.linalg.norm(centres - centroid, axis=1).mean()))
    return {"patch_hit": float(np.mean(hits)), "patch_error": float(np.mean(errors)),
            "chance_patch_hit": 1.0 / (grid * grid), "chance_patch_error": float(np.mean(chance)),
            "objects": len(hits)}


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
            "probe": _probe(img, model, tokenizer, data, device),
            "localisation": _localisation(model, tokenizer, data, device)}


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
    grid = int(model.visual.grid_size[0])
    train = render_scenes(cfg, data_cfg, settings.images, TRAIN_SPLIT, settings.seed, size,
                          grid, settings.workers, settings.progress, cache)
    heldout = render_scenes(cfg, data_cfg, settings.heldout_images, HELDOUT_SPLIT,
                            settings.seed, size, grid, settings.workers, settings.progress, cache)
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
        # the camera window it was trained on (learning.backbone.roi; null = the whole image)
        "image_roi": dataclasses.asdict(bb.roi) if bb.roi is not None else None,
        "camera": {k: cfg["sim"]["camera"][k] for k in ("width", "height")},
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
    loc, rloc = card["heldout"].get("localisation"), card["random_init_reference"].get(
        "localisation")
    if loc and rloc:
        rows.append(f"| named object's best patch is its own (share of {loc['objects']}) | "
                    f"{loc['patch_hit']:.3f} | {rloc['patch_hit']:.3f} | "
                    f"{loc['chance_patch_hit']:.3f} |")
        rows.append(f"| ... its distance from the object's pixels (patches) | "
                    f"{loc['patch_error']:.2f} | {rloc['patch_error']:.2f} | "
                    f"{loc['chance_patch_error']:.2f} |")
    table = "\n".join(rows)
    cached = " (scenes read from the cache of an earlier run)" if made.get(
        "scenes_from_cache") else ""
    roi = card.get("image_roi")
    roi = ("x".join(str(roi[k]) for k in ("width", "height")) +
           f"+{roi['x_offset']}+{roi['y_offset']}") if roi else "(all of it)"
    cam = "x".join(str(card.get("camera", {}).get(k, "?")) for k in ("width", "height"))
    return f"""# {card['architecture']}: SAFARI's tabletop CLIP

A small open_clip CLIP (image and text towers, {card['parameters'] / 1e6:.1f} M parameters,
{card['visual_parameters'] / 1e6:.1f} M in the image tower, {card['image_size']} px images) trained
contrastively on rendered tabletop scenes and captions that describe them (objects, colours,
shapes, spatial relations, the gripper's state and height, pads, the keep-out props), never the
task, and densely: each patch embedding towards the phrase of what its pixels show ("a red
cube", "the gripper", "the table"), as an internet CLIP's patches roughly say what lies where.
It sees the window {roi} of the {cam} camera image.
It stands in for internet pre-training, which these machines cannot download. Made by
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
- loss (contrastive + {s.get('dense_weight', 0.0)} x dense):
  {card['loss']['first_50']:.3f} (first 50 steps) -> {card['loss']['last_50']:.3f} (last 50)

## Held-out evaluation

{table}

Retrieval: {r['queries']} queries, each ranked among {r['pool']} held-out pairs. Probe: ridge
regression on frozen pooled image features, the object name's text embedding and their product;
{p['train_samples']} training and {p['test_samples']} test objects, split by scene; chance
predicts the training mean. Patches: the patch embedding (of the image tower's grid) most similar
to the phrase of an object the scene shows; chance draws a patch uniformly.

## Rebuild

Run the command above from the repository after `source scripts/env.sh` (`--device cuda` on a
GPU); the scenes are seeded, so the data is the same on any machine, the weights equal up to
floating-point differences between devices.
"""

