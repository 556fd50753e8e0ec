"""Motion labelling of teleoperation logs (prints figures; not a test).

Records simulated teleoperation logs (test/bags/teleop.py: smooth joint-space motions towards the
task, never SAFARI's primitives, written with mcap's ROS 2 writer), half with the arm's commands
and half with joint states alone, labels them (safari_ros.pretrain.labelling) and prints, per
kind of log:
  - steps, labelled, skipped by reason, residuals (in step_m) of labelled and unexplained steps;
  - label accuracy against the operator's ground truth (on steps that are one motion), coverage
    (ground-truth primitive steps labelled right) and what became of the steps no primitive makes;
  - costs: steps the simulator found costly and how many of them the shield's checks flag, and
    how many more the checks flag (their margins);
  - labelling speed (steps/s).
With --pretrain it also pre-trains on the teleoperation logs and, separately, on as many oracle
demonstration episodes (safari_pretrain demos), and prints each one's action accuracy on held-out
oracle demonstrations (other seeds).

    PYTHONPATH=src/safari_ros .venv/bin/python bench/bench_labelling.py [--episodes 6] [--pretrain]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import open_clip
import torch

from safari_ros.bags import TopicMap, read_motion_logs
from safari_ros.config import load_config
from safari_ros.core import build_model, load_checkpoint
from safari_ros.pretrain import TrainSettings, generate_demos, load_bag_features, run_pretrain
from safari_ros.pretrain.labelling import MotionLabeller
from safari_ros.pretrain.train import evaluate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))
from bags.teleop import NONE, write_teleop_log  # noqa: E402  (test helpers, after the path)


def _config(tiny: bool) -> dict:
    cfg = load_config()
    cfg["sim"]["camera"].update(width=32, height=32)  # labelling does not look at the pixels
    if tiny:
        from core.core_helpers import tiny_learning_dict

        open_clip.add_model_config(REPO / "test" / "core" / "model_configs")
        cfg["learning"] = tiny_learning_dict()
    return cfg


def _quantiles(values: list[float]) -> str:
    if not values:
        return "-"
    t = torch.tensor(values)
    return (f"median {t.median():.3f}, p90 {t.quantile(0.9):.3f}, max {t.max():.3f} "
            f"(n={len(values)})")


def label_figures(cfg: dict, logs: list, tmap: TopicMap) -> None:
    """Label the logs and print accuracy, counts, residuals and cost agreement."""
    labeller = MotionLabeller(cfg, tmap.labelling)
    rows, windows_all, seconds = [], [], 0.0
    for truth in logs:
        (log,) = read_motion_logs(truth.path, tmap)
        t = time.perf_counter()
        windows = labeller.label_log(log, tmap)
        seconds += time.perf_counter() - t
        windows_all += windows
        for w in windows:
            label = labeller.names[w.action] if w.action is not None else None
            rows.append((truth.intent(w.start_ns, w.end_ns), label, w,
                         truth.costly(w.start_ns, w.end_ns)))
    labelled = [r for r in rows if r[1] is not None]
    defined = [r for r in rows if r[0] not in (None, NONE)]
    right = [r for r in defined if r[1] == r[0]]
    judged = [r for r in labelled if r[0] not in (None, NONE)]
    print(f"  steps {len(rows)}, labelled {len(labelled)}, skipped "
          f"{dict(Counter(w.reason for w in windows_all if w.reason))}")
    print(f"  label accuracy {sum(r[1] == r[0] for r in judged) / max(len(judged), 1):.3f} "
          f"({sum(r[1] == r[0] for r in judged)}/{len(judged)} labelled steps that are one "
          f"motion); coverage {len(right) / max(len(defined), 1):.3f} ({len(right)}/"
          f"{len(defined)} primitive steps labelled right)")
    no_primitive = Counter(r[1] or "skipped" for r in rows if r[0] == NONE)
    mixed = Counter(r[1] or "skipped" for r in rows if r[0] is None)
    print(f"  steps no primitive makes: {dict(no_primitive)}; steps mixing two motions: "
          f"{dict(mixed)}")
    wrong = Counter((r[0], r[1]) for r in judged if r[1] != r[0])
    print(f"  confusions (truth, label): {dict(wrong)}")
    print(f"  residual of labelled steps: {_quantiles([r[2].residual for r in labelled])}")
    print(f"  residual of unexplained steps: "
          f"{_quantiles([w.residual for w in windows_all if w.reason == 'no_primitive'])}")
    sim_costly = [r for r in labelled if r[3]]
    flagged = [r for r in labelled if r[2].cost > 0]
    print(f"  costs: simulator {len(sim_costly)} labelled steps, of which flagged "
          f"{sum(r[2].cost > 0 for r in sim_costly)}; flagged in all {len(flagged)} "
          f"({dict(Counter(k for r in flagged for k, v in r[2].cost_sources.items() if v))})")
    print(f"  labelling: {len(rows) / seconds:.0f} steps/s (one core)")


def pretrain_figures(cfg: dict, logs: list, work: Path, episodes: int, epochs: int) -> None:
    """Held-out action accuracy on oracle demonstrations after pre-training on the teleoperation
    logs vs on oracle demonstrations of as many episodes."""
    per_template = max(1, episodes // 3)
    demos = work / "demos"
    generate_demos(copy.deepcopy(cfg), demos, episodes_per_template=per_template, seed=11)
    held = work / "heldout"
    generate_demos(copy.deepcopy(cfg), held, episodes_per_template=2, seed=99, epsilon=0.0,
                   drift_prob=0.0)
    settings = TrainSettings(epochs=epochs, batch_size=32, heldout_fraction=0.0,
                             cache_dir=work / "cache", progress=False)
    tmap = TopicMap.load()
    results = {}
    for name, bags, topic_map in (("teleoperation (labelled)", [t.path for t in logs],
                                   tmap.for_motion_labels()),
                                  ("oracle demonstrations", [demos], tmap)):
        result = run_pretrain(copy.deepcopy(cfg), bags, work / name.split()[0], settings,
                              topic_map)
        model = build_model(cfg)
        load_checkpoint(result.checkpoint, model)
        data, _ = load_bag_features(model, [held], tmap, cache_dir=work / "cache")
        metrics = evaluate(model, data, torch.device("cpu"))
        results[name] = (result.report["data"]["steps"], metrics["action_accuracy"],
                         metrics["chance_accuracy"])
    for name, (steps, accuracy, chance) in results.items():
        print(f"  pre-trained on {name}: {steps} steps -> held-out oracle action accuracy "
              f"{accuracy:.3f} (chance {chance:.3f})")


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=6, help="episodes per kind of log")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pretrain", action="store_true", help="also pre-train and compare")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--shipped-backbone", action="store_true",
                    help="pre-train with the config's backbone instead of the tiny test ViT")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = _config(tiny=not args.shipped_backbone)
    tmap = TopicMap.load().for_motion_labels()
    work = Path(tempfile.mkdtemp(prefix="bench_labelling_"))
    logs = {}
    for commands in (True, False):
        t = time.perf_counter()
        logs[commands] = [write_teleop_log(work / f"teleop_{commands}_{k}.mcap", cfg, episodes=3,
                                           seed=args.seed * 100 + 10 * commands + k,
                                           commands=commands)
                          for k in range(max(1, args.episodes // 3))]
        print(f"recorded {args.episodes} teleoperation episodes "
              f"({'with' if commands else 'without'} the arm's commands) in "
              f"{time.perf_counter() - t:.1f} s")
    for commands, kind in ((True, "with commands"), (False, "joint states alone")):
        print(f"\nlogs {kind}:")
        label_figures(cfg, logs[commands], tmap)
    if args.pretrain:
        print("\npre-training:")
        pretrain_figures(cfg, [*logs[True], *logs[False]], work, 2 * args.episodes, args.epochs)
    print(f"\n(files in {work})")


if __name__ == "__main__":
    main()
