"""Does the policy find what the instruction names, where the task needs it? Per template and
phase, along the scripted oracle's own episodes in fresh layouts: how far the spatial readout's
estimates lie from the named object (query 1) and the target pad (query 2, pushes), and how
often the greedy policy picks the oracle's action.

The oracle acts (nothing the model does changes the states), so every checkpoint is measured on
the same frames: a readout or policy change shows up here without the noise of closed-loop
success. "near" frames have the TCP within 6 cm (x, y) of the named object, where a lattice
step's error decides a grasp; "far" the rest. Layout seeds start at --seed-base (development
seeds: keep them disjoint from the main job's run.deploy_seed_base and run.demo_seed).

    python bench/bench_grounding.py [CHECKPOINT ...] [--config C] [--episodes 6]

CHECKPOINT: adapter files (`safari_pretrain train` output); none = the fresh adapters (an
untrained readout is the frozen backbone's phrase attention). Prints figures only (not a test).
About 1.5 minutes per checkpoint and 36 episodes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from collections.abc import Callable

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np
import torch

from safari_ros.config import load_config
from safari_ros.core import build_model
from safari_ros.core.checkpoint import load_checkpoint
from safari_ros.core.heads import DEPTH_CHANNELS
from safari_ros.core.model import SafariModel, depth_lifter
from safari_ros.evaluation.loop import make_envs, observe_states
from safari_ros.evaluation.models import perceive
from safari_ros.sim.oracle import ScriptedOracle
from safari_ros.sim.tasks import TEMPLATES

NEAR_M = 0.06  # TCP within this of the named object (x, y): the frames where a grasp is decided


@torch.no_grad()
def readout_and_action(model: SafariModel, obs: dict, instruction: str,
                       lift: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray,
                                                                                     int]:
    """The readout's base-frame estimate per query (Q, 3) and the greedy action, for one frame
    as perception and the policy see it."""
    state = observe_states(model, lambda rgb: perceive(model, rgb), lift, [obs], [instruction])
    out = model.suffix_and_heads(state)
    points = state.depth.reshape(1, -1, DEPTH_CHANNELS)
    where = model.heads.readout.locate(out.readout_attention, points)[0]
    return where.numpy(), int(out.policy_logits.argmax(1))


def measure(model: SafariModel, cfg: dict, split: str, episodes: int,
            seed_base: int) -> dict[str, list[float]]:
    """Per-frame errors (m) and agreements along `episodes` oracle episodes per template."""
    lift = depth_lifter(model.hp)
    env = make_envs(cfg, split, 1)[0]
    rows: dict[str, list[float]] = defaultdict(list)
    try:
        for k in range(episodes * len(TEMPLATES)):
            template = TEMPLATES[k % len(TEMPLATES)]
            obs, _ = env.reset(seed=seed_base + k, options={"template": template})
            sim = env.sim
            oracle = ScriptedOracle(sim)
            for _ in range(sim.episode_steps):
                expert = oracle.act()
                where, greedy = readout_and_action(model, obs, sim.instruction, lift)
                obj, pad = sim.target_object_position(), sim.target_pad_position()
                phase = "near" if np.linalg.norm(sim.ee_position()[:2] - obj[:2]) < NEAR_M \
                    else "far"
                rows[f"{template} object {phase}"].append(
                    float(np.linalg.norm(where[0, :2] - obj[:2])))
                if pad is not None and len(where) > 1:
                    rows[f"{template} pad"].append(float(np.linalg.norm(where[1, :2] - pad[:2])))
                rows[f"{template} agree {phase}"].append(float(greedy == expert))
                obs, _, terminated, truncated, _ = env.step(expert)
                if terminated or truncated:
                    break
    finally:
        env.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*", help="adapter files; none = fresh adapters")
    ap.add_argument("--config", default=None, help="tabletop config (default: the repository's)")
    ap.add_argument("--episodes", type=int, default=6, help="oracle episodes per template")
    ap.add_argument("--seed-base", type=int, default=2_200_000_000)
    ap.add_argument("--splits", default="train,heldout")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one frame at a time: a second thread only spins
    cfg = load_config(args.config)
    if cfg["learning"]["heads"].get("spatial_queries", 0) < 1:
        raise SystemExit("these heads have no spatial readout (heads.spatial_queries: 0)")
    for path in args.checkpoints or [None]:
        torch.manual_seed(0)  # the fresh adapters policy_node builds
        model = build_model(cfg).eval()
        if path:
            load_checkpoint(path, model)
        print(f"\n{path or 'fresh adapters'}: {args.episodes} oracle episodes per template, "
              f"layout seeds from {args.seed_base}")
        print(f"{'split':8s} {'template / frames':22s} {'n':>5s}  {'median':>8s}  "
              f"{'< 2 cm':>6s}  {'< 4 cm':>6s}  {'greedy = oracle':>15s}")
        for split in args.splits.split(","):
            rows = measure(model, cfg, split, args.episodes, args.seed_base)
            for key in sorted(rows):
                v = np.asarray(rows[key])
                if " agree " in key:
                    print(f"{split:8s} {key.replace(' agree', ''):22s} {len(v):5d}  "
                          f"{'':8s}  {'':6s}  {'':6s}  {v.mean():15.2f}")
                else:
                    print(f"{split:8s} {key:22s} {len(v):5d}  {np.median(v) * 100:5.1f} cm  "
                          f"{np.mean(v < 0.02):6.2f}  {np.mean(v < 0.04):6.2f}")


if __name__ == "__main__":
    main()
