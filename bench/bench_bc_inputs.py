"""Which inputs does behaviour cloning use? Held-out action accuracy from subsets of the state.

For a bag of demonstrations (`safari_pretrain demos`), the same MLP is trained to predict the
oracle's action from: proprioception + instruction embedding; + the lifted depth
(core/features.lift_depth); + the frozen backbone's pooled image embedding (no adapters); + where
the instruction's things are (the heads' SpatialReadout over the frozen patch embeddings and the
lifted depth, trained with the MLP). Held-out episodes
(pre-training's split) measure what each input adds. If the image adds nothing, or lowers
held-out accuracy while raising the training one, the backbone's image features tell the
policy nothing it can use about where to go: no head or RL algorithm on top can fix that
(bench_localisation.py says why).

Run from the repository root after `source scripts/env.sh`:
    safari_pretrain demos --out /tmp/demos --episodes-per-template 40 --seed 7
    python bench/bench_bc_inputs.py /tmp/demos
Prints figures only (not a test). About a minute on 2 cores once the bag's features are cached.
"""

from __future__ import annotations

import argparse
import math
import os

import torch
from torch import nn

from safari_ros.bags import TopicMap
from safari_ros.config import load_config
from safari_ros.core import build_model
from safari_ros.core.features import DEPTH_CHANNELS
from safari_ros.core.heads import INSTRUCTION_PARTS, SpatialReadout
from safari_ros.pretrain.features import default_cache_dir, load_bag_features
from safari_ros.pretrain.train import split_episodes

INPUTS = (("proprio", "instruction"), ("proprio", "instruction", "depth"),
          ("proprio", "instruction", "depth", "image"),
          ("proprio", "instruction", "where"), ("proprio", "instruction", "image", "where"),
          ("proprio", "instruction", "depth", "where"),
          ("proprio", "instruction", "depth", "image", "where"))


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bag", help="a demonstrations bag")
    ap.add_argument("--steps", type=int, default=3000, help="MLP training steps")
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cfg = load_config()
    model = build_model(cfg).eval()
    fs, _ = load_bag_features(model, [ns.bag], TopicMap.load(), cache_dir=default_cache_dir())
    train, held = split_episodes(fs.episode, model.hp.pretrain.heldout_fraction,
                                 model.hp.pretrain.seed)
    with torch.no_grad():
        parts = [model.suffix_with_patches(fs.tokens[i:i + 256].float())
                 for i in range(0, len(fs), 256)]
    image = torch.cat([p[0] for p in parts])
    patches = torch.cat([p[1] for p in parts])
    e = model.backbone.embed_dim
    # the sentence's and its frame's embeddings; the referring phrases' (SafariModel.
    # encode_instruction) are the readout's queries
    n = INSTRUCTION_PARTS * e
    columns = {"proprio": fs.proprio * torch.tensor(model.hp.heads.proprio_scale),
               "instruction": fs.instruction[:, :n].float(), "depth": fs.depth, "image": image}
    phrases = fs.instruction[:, n:].float().reshape(len(fs), -1, e)
    expert = fs.action == fs.proposed  # the oracle's own choices, not the perturbations
    fit = train[(expert & (fs.success > 0.5))[train]]
    test = held[expert[held]]
    print(f"{len(fs)} steps of {int(fs.episode.unique().numel())} episodes; "
          f"{len(fit)} expert steps of successful training episodes, {len(test)} held-out "
          f"expert steps; chance {1 / len(model.actions):.2f}")
    print(f"{'inputs':<40} {'train acc':>9} {'held-out acc':>12}")
    for names in INPUTS:
        torch.manual_seed(ns.seed)
        x = torch.cat([columns[n] for n in names if n != "where"], dim=1)
        where = SpatialReadout(e, phrases.shape[1], math.isqrt(patches.shape[1]),
                               init_scale=model.heads.readout.log_scale.exp().item()) \
            if "where" in names else None
        width = x.shape[1] + (where.out_dim if where is not None else 0)
        net = nn.Sequential(nn.Linear(width, 256), nn.GELU(), nn.Linear(256, 256),
                            nn.GELU(), nn.Linear(256, len(model.actions)))

        def logits(i: torch.Tensor, net: nn.Module = net, x: torch.Tensor = x,
                   where: SpatialReadout | None = where) -> torch.Tensor:
            if where is None:
                return net(x[i])
            points = fs.depth[i].reshape(len(i), -1, DEPTH_CHANNELS)
            read, _ = where(patches[i], phrases[i], points, fs.proprio[i][:, -3:],
                            model.hp.heads.tcp_unit_m)
            xi = torch.cat([x[i], read], dim=1)
            return net(xi)

        params = list(net.parameters()) + (list(where.parameters()) if where else [])
        opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)
        for _ in range(ns.steps):
            idx = fit[torch.randint(0, len(fit), (128,))]
            loss = nn.functional.cross_entropy(logits(idx), fs.action[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = [float((logits(i).argmax(1) == fs.action[i]).float().mean()) for i in (fit, test)]
        print(f"{' + '.join(names):<40} {acc[0]:>9.3f} {acc[1]:>12.3f}")


if __name__ == "__main__":
    main()
