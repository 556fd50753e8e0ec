"""Where things are, as the frozen backbone sees them: can a spatial probe find the named object?

The policy has to move the gripper towards the object the instruction names, to within half a
lattice step (`actions.step_m`): the oracle it imitates picks its move from the sign and size of
that offset. This bench measures whether the backbone's patch features hold that information at
all, independent of the heads and of SCAPO. For rendered tabletop scenes it trains a probe that
is *told* which object is meant (a learned query per (colour, shape) pair: an upper bound on any
instruction-steered readout) to put a soft-argmax attention over the image's patches on that
object, and reports the held-out error in lattice steps against the error of always guessing the
mean position. Feature sets: raw patch colours (the resolution limit of the patch grid itself),
the frozen layer-k tokens the stack caches, and the final patch embeddings. Views: the camera's
full frame, and the window the stack shows the backbone (learning.backbone.roi).

Run from the repository root after `source scripts/env.sh`:
    python bench/bench_localisation.py [--scenes 700] [--steps 1500]
Prints figures only (not a test). About 2 minutes on 2 cores with the shipped backbone.
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from safari_ros.config import load_config
from safari_ros.core import build_model
from safari_ros.core.backbone import crop_roi
from safari_ros.core.hparams import RegionOfInterest
from safari_ros.core.model import SafariModel
from safari_ros.sim import TabletopSim


def render(sim: TabletopSim, n: int, seed: int,
           roi: RegionOfInterest | None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray,
                                                  float]:
    """Scenes: images (the ROI's window), the named object's position in [-1, 1] units of that
    window, its (colour, shape) pair index, and the window units per lattice step at the task
    region's centre."""
    spec = sim.cfg["sim"]["tasks"]["train"]
    pairs = [(c, s) for c in spec["colours"] for s in spec["objects"]]
    cam = sim.cfg["sim"]["camera"]
    roi = roi or RegionOfInterest(0, 0, cam["width"], cam["height"], cam["width"], cam["height"])
    scale = cam["width"] / roi.image_width
    origin = np.array([roi.x_offset, roi.y_offset]) * scale
    side = roi.width * scale

    def window_units(points: np.ndarray) -> np.ndarray:
        return (sim.project(points) - origin) / side * 2 - 1

    images, targets, ids = [], [], []
    for i in range(n):
        sim.reset(seed=seed + i)
        images.append(crop_roi(sim.render_rgb(), roi))
        targets.append(window_units(sim.target_object_position()))
        ids.append(pairs.index((sim.task.colour, sim.task.shape)))
    region = sim.cfg["sim"]["tasks"]["region"]
    centre = np.array([*(np.add(region["min"], region["max"]) / 2), 0.02])
    step = float(sim.cfg["actions"]["step_m"])
    per_step = [np.linalg.norm(window_units(centre + step * e) - window_units(centre))
                for e in np.eye(3)[:2]]
    return images, np.array(targets, np.float32), np.array(ids), float(np.mean(per_step))


@torch.no_grad()
def patch_features(model: SafariModel, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Per-patch features (S, P, C): raw colours, layer-k tokens, final patch embeddings."""
    bb = model.backbone
    patch = bb.visual.conv1.kernel_size[0]
    out: dict[str, list[torch.Tensor]] = {"patch colours": [], "layer-k tokens": [],
                                          "final patch embeddings": []}
    for i in range(0, len(images), 64):
        x = bb.preprocess(np.stack(images[i:i + 64]))
        tokens = model.prefix(x)
        final = bb.forward_prefix(x, bb.num_layers) if model.split_layer_k < bb.num_layers \
            else tokens
        out["patch colours"].append(F.avg_pool2d(x, patch).flatten(2).transpose(1, 2))
        out["layer-k tokens"].append(tokens[:, 1:])
        out["final patch embeddings"].append(bb.pool_and_patches(final)[1])
    return {k: torch.cat(v).float() for k, v in out.items()}


def probe_error(feats: torch.Tensor, ids: np.ndarray, targets: np.ndarray, n_train: int, lr: float,
                steps: int, seed: int) -> float:
    """Held-out mean distance (image units) of a told-which-object soft-argmax probe."""
    torch.manual_seed(seed)
    side = math.isqrt(feats.shape[1])
    c = (torch.arange(side, dtype=torch.float32) + 0.5) / side * 2 - 1
    v, u = torch.meshgrid(c, c, indexing="ij")
    grid = torch.stack([u.flatten(), v.flatten()], dim=-1)
    keys = F.layer_norm(feats, feats.shape[-1:])
    query = nn.Embedding(int(ids.max()) + 1, feats.shape[-1])
    opt = torch.optim.Adam(query.parameters(), lr=lr)
    ids_t, y = torch.as_tensor(ids), torch.as_tensor(targets)

    def predict(idx: torch.Tensor) -> torch.Tensor:
        attn = torch.softmax(torch.einsum("bpc,bc->bp", keys[idx], query(ids_t[idx])), dim=-1)
        return attn @ grid

    for _ in range(steps):
        idx = torch.randint(0, n_train, (64,))
        loss = (predict(idx) - y[idx]).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        test = torch.arange(n_train, len(ids))
        return float((predict(test) - y[test]).norm(dim=-1).mean())


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=700, help="rendered scenes (85%% train)")
    ap.add_argument("--steps", type=int, default=3000, help="probe training steps")
    ap.add_argument("--seed", type=int, default=7_000_000, help="first scene seed")
    ap.add_argument("--lr", type=float, default=0.02, help="probe learning rate")
    ns = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cfg = load_config()
    model = build_model(cfg).eval()
    sim = TabletopSim(cfg)
    n_train = int(0.85 * ns.scenes)
    print(f"backbone {model.backbone_id}, {ns.scenes} scenes ({n_train} probe-train), "
          f"error in lattice steps of {cfg['actions']['step_m']} m (the policy needs < 0.5)")
    print(f"{'view':<28} {'features':<24} {'probe':>7} {'guess mean':>11}")
    roi = model.backbone.roi
    model.backbone.roi = None  # the bench cuts each view's window itself
    views = [("full frame", None)] + ([("learning.backbone.roi", roi)] if roi else [])
    for view, window in views:
        t0 = time.perf_counter()
        images, targets, ids, per_step = render(sim, ns.scenes, ns.seed, window)
        baseline = float(np.linalg.norm(targets[n_train:] - targets[:n_train].mean(0),
                                         axis=1).mean())
        label = f"{view} {images[0].shape[1]} px"
        for name, feats in patch_features(model, images).items():
            err = probe_error(feats, ids, targets, n_train, ns.lr, ns.steps, ns.seed)
            print(f"{label:<28} {name:<24} {err / per_step:>7.2f} {baseline / per_step:>11.2f}")
        print(f"{'':<28} ({time.perf_counter() - t0:.0f} s; one step = "
              f"{per_step * images[0].shape[1] / 2:.1f} px of the {images[0].shape[1]} px view, "
              f"{per_step * model.backbone.image_size / 2:.1f} px at the backbone's "
              f"{model.backbone.image_size} px)")
    sim.close()


if __name__ == "__main__":
    main()
