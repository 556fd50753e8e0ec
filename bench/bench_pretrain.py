"""Pre-training benchmark (prints figures; not a test).

Records a demonstration bag with the simulator's oracle (`generate_demos`), then:
  1. features of the bag with a cold cache (read the bag + run the frozen prefix) vs a warm cache
     (read the safetensors file), best of --repeat, and the speed-up ratio;
  2. pre-training updates per second on the cached features (run_pretrain, --epochs).

By default the model is the config's (ViT-B-32 at the camera's 224x224: the real cost of the
prefix); --tiny uses the tests' 4-block ViT at 32x32 for a quick run.

    PYTHONPATH=src/safari_ros .venv/bin/python bench/bench_pretrain.py [--tiny] [--episodes 2]
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path

import open_clip
import torch

from safari_ros.bags import TopicMap
from safari_ros.config import load_config
from safari_ros.core import build_model
from safari_ros.pretrain import TrainSettings, generate_demos, load_bag_features, run_pretrain

REPO = Path(__file__).resolve().parents[1]


def _config(tiny: bool) -> dict:
    cfg = load_config()
    if tiny:
        sys.path.insert(0, str(REPO / "test"))
        from core.core_helpers import tiny_learning_dict  # registers the tiny ViT

        open_clip.add_model_config(REPO / "test" / "core" / "model_configs")
        cfg["learning"] = tiny_learning_dict()
        cfg["sim"]["camera"].update(width=32, height=32)
    return cfg


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny test ViT at 32x32 (fast)")
    ap.add_argument("--episodes", type=int, default=2, help="episodes per template")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = _config(args.tiny)
    work = Path(tempfile.mkdtemp(prefix="bench_pretrain_"))
    try:
        t = time.perf_counter()
        demos = generate_demos(copy.deepcopy(cfg), work / "bag",
                               episodes_per_template=args.episodes)
        gen_s = time.perf_counter() - t
        cam = cfg["sim"]["camera"]
        print(f"demos: {demos.episodes} episodes, {demos.steps} steps at "
              f"{cam['width']}x{cam['height']} ({demos.costly_steps} costly) in {gen_s:.1f} s "
              f"= {demos.steps / gen_s:.1f} steps/s")

        model = build_model(cfg)
        print(f"model: {model.backbone_id}, split at layer {model.split_layer_k}, "
              f"torch threads {torch.get_num_threads()}")
        tmap, miss, hit = TopicMap.load(), [], []
        for i in range(args.repeat):
            cache = work / f"cache{i}"
            t = time.perf_counter()
            _, stats = load_bag_features(model, [demos.path], tmap, cache_dir=cache)
            miss.append(time.perf_counter() - t)
            assert stats.misses and stats.steps_computed == demos.steps
            t = time.perf_counter()
            _, stats = load_bag_features(model, [demos.path], tmap, cache_dir=cache)
            hit.append(time.perf_counter() - t)
            assert stats.hits and not stats.misses
        print(f"features, cache miss (read bag + prefix): {min(miss):.3f} s "
              f"({demos.steps / min(miss):.0f} steps/s)")
        print(f"features, cache hit  (hash bag + load):   {min(hit):.3f} s "
              f"({demos.steps / min(hit):.0f} steps/s)")
        print(f"cache speed-up: {min(miss) / min(hit):.1f}x")

        result = run_pretrain(cfg, [demos.path], work / "run", TrainSettings(
            epochs=args.epochs, batch_size=args.batch_size, cache_dir=work / "cache0",
            progress=False))
        timing = result.report["timing"]
        print(f"pre-training: {timing['updates']} updates of batch {args.batch_size} in "
              f"{timing['train_seconds']:.2f} s = {timing['updates_per_second']:.1f} updates/s "
              f"({timing['updates_per_second'] * args.batch_size:.0f} samples/s, "
              "incl. per-epoch held-out evaluation)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
