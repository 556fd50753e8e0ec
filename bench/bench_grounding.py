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
    python bench/bench_grounding.py CHECKPOINT --closed-loop [--config C] [--episodes 20]

--closed-loop: the greedy policy acts instead, as deployed (the stack's shield), and each failed
episode is put where it went wrong: the TCP never came within 6 cm of the named object, or it
came near with the readout locating the object (median error < 2 cm on those frames), or near
with the object misread.

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
from safari_ros.core.refusals import RefusalMemory
from safari_ros.evaluation.deployment import STACK_SHIELD
from safari_ros.evaluation.loop import ShieldGate, make_envs, observe_states
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


def closed_loop(model: SafariModel, cfg: dict, split: str, episodes: int,
                seed_base: int) -> list[dict[str, object]]:
    """The greedy policy acting as deployed (through the stack's shield, with policy_node's
    memory of refused proposals), `episodes` per template. Per episode: success, whether the
    TCP ever came within NEAR_M (x, y) of the named object, and the readout's errors to it on
    those near frames: a failure that never came near went wrong on the way, one that came
    near with the object located (median error < 2 cm) failed at the grasp or push itself."""
    lift = depth_lifter(model.hp)
    env = make_envs(cfg, split, 1)[0]
    gate = ShieldGate(cfg, STACK_SHIELD, model.hp.scapo.gamma, 1)
    n_actions = len(gate.shield.actions)
    refusals = RefusalMemory(n_actions)
    results = []
    try:
        for k in range(episodes * len(TEMPLATES)):
            template = TEMPLATES[k % len(TEMPLATES)]
            obs, _ = env.reset(seed=seed_base + k, options={"template": template})
            gate.reset(0)
            refusals.reset()
            sim, success, near, far = env.sim, False, [], []
            for _ in range(sim.episode_steps):
                state = observe_states(model, lambda rgb: perceive(model, rgb), lift, [obs],
                                       [sim.instruction])
                with torch.no_grad():
                    out = model.suffix_and_heads(state)
                    where = model.heads.readout.locate(
                        out.readout_attention, state.depth.reshape(1, -1, DEPTH_CHANNELS))[0]
                obj = sim.target_object_position()
                error = float(np.linalg.norm(where[0, :2].numpy() - obj[:2]))
                is_near = np.linalg.norm(sim.ee_position()[:2] - obj[:2]) < NEAR_M
                (near if is_near else far).append(error)
                probs = refusals.apply(out.policy_probs[0].double().numpy())
                proposed = int(np.argmax(probs))
                action, intervened, _ = gate.decide(0, sim, proposed,
                                                    gate.learned_rows(out, 1, n_actions)[0])
                refusals.record(proposed, intervened, gate.shield.actions[action].name == "stop")
                obs, _, terminated, truncated, info = env.step(action)
                success = success or bool(info["success"])
                if terminated or truncated:
                    break
            results.append({"template": template, "success": success, "near": near,
                            "far": far})
    finally:
        env.close()
    return results


def print_closed_loop(split: str, results: list[dict[str, object]]) -> None:
    """Per template: successes, and the failures by where they went wrong."""
    for template in TEMPLATES:
        rows = [r for r in results if r["template"] == template]
        failed = [r for r in rows if not r["success"]]
        never = [r for r in failed if not r["near"]]
        located = [r for r in failed if r["near"] and np.median(r["near"]) < 0.02]
        far_error = [np.median(r["far"]) for r in never if r["far"]]
        print(f"{split:8s} {template:6s} success {len(rows) - len(failed):2d}/{len(rows):2d}; "
              f"failures: never near the object {len(never):2d} (readout's median error on "
              f"the way {np.median(far_error) * 100 if far_error else float('nan'):.1f} cm), "
              f"near it with the object located {len(located):2d}, near it misread "
              f"{len(failed) - len(never) - len(located):2d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*", help="adapter files; none = fresh adapters")
    ap.add_argument("--config", default=None, help="tabletop config (default: the repository's)")
    ap.add_argument("--episodes", type=int, default=6, help="oracle episodes per template")
    ap.add_argument("--seed-base", type=int, default=2_200_000_000)
    ap.add_argument("--splits", default="train,heldout")
    ap.add_argument("--closed-loop", action="store_true",
                    help="the greedy policy acts (through the stack's shield) instead of the "
                         "oracle: where did each failed episode go wrong, and was the named "
                         "object located there")
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
            if args.closed_loop:
                print_closed_loop(split, closed_loop(model, cfg, split, args.episodes,
                                                     args.seed_base))
                continue
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
