"""`safari_pretrain`: make demonstration bags and pre-train the adapters on bags.

    safari_pretrain demos --out runs/demos/bag --episodes-per-template 20 --epsilon 0.15
    safari_pretrain train runs/demos/bag [more bags] --out runs/pretrain --epochs 20
    safari_pretrain backbone --out models/safari_clip_tabletop.safetensors   # the backbone CLIP
    torchrun --nproc_per_node=2 -m safari_ros.pretrain.cli train BAG --out DIR   # DDP

    safari_pretrain train robot_logs/*.mcap --label-from-motion --out runs/pretrain  # plain logs
    safari_pretrain demos --preset tiny --out /tmp/bag && safari_pretrain train /tmp/bag \
        --preset tiny --out /tmp/run                                   # a tiny run, seconds

All read the config (--config, default $SAFARI_CONFIG or config/tabletop.yaml); `--preset
tiny|cpu|full` sizes a run (config/pretrain_presets.yaml), `--set dotted.key=value` overrides any
entry of the config (the value is YAML), and `--model-config-dir` registers extra open_clip model
configs. Exit status: 0 done, 1 stopped early (--stop-after-epochs, resumable), 2 bad input or
configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import open_clip
import torch
import yaml

from safari_ros.bags import BagError, TopicMap, describe_skipped
from safari_ros.config import ConfigError, default_config_path, load_config
from safari_ros.core import BackboneError, learning_config
from safari_ros.pretrain.backbone import (
    BackboneTrainSettings,
    load_backbone_data_config,
    train_backbone,
)
from safari_ros.pretrain.demos import generate_demos
from safari_ros.pretrain.features import default_cache_dir
from safari_ros.pretrain.train import TrainSettings, run_pretrain
from safari_ros.sim.tasks import TEMPLATES

__all__ = ["PRESETS_FILE", "apply_overrides", "build_parser", "load_preset", "main"]

log = logging.getLogger("safari_pretrain")

DEMO_EPISODES = 10  # demos' episodes per template without a preset
PRESETS_FILE = "pretrain_presets.yaml"  # beside the tabletop config in use
PRESET_NAMES = ("tiny", "cpu", "full")


def _set(cfg: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted `key` of the config; every section on the way must exist."""
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"{key}: {part!r} is not a section of the config")
        node = node[part]
    node[leaf] = value


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set `a.b.c=value` entries (value parsed as YAML) in the loaded config, in place."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects dotted.key=value, got {item!r}")
        _set(cfg, key, yaml.safe_load(text))
    return cfg


def load_preset(name: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """A preset of config/pretrain_presets.yaml (or `path`); ConfigError naming the file."""
    p = Path(path) if path else default_config_path().parent / PRESETS_FILE
    try:
        presets = (yaml.safe_load(p.read_text()) or {}).get("presets") or {}
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise ConfigError(f"cannot read the presets file {p}: {exc}") from exc
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r} in {p}; known: {sorted(presets)}")
    return presets[name] or {}


def _apply_preset(cfg: dict[str, Any], args: argparse.Namespace) -> None:
    """The preset's model (an evaluation preset's tabletop overrides), its config entries and
    its defaults of this subcommand's options (where the option was not given)."""
    preset = load_preset(args.preset)
    if preset.get("model"):
        # Imported here: the evaluation harness is needed only for a preset that names one.
        from safari_ros.evaluation.models import register_model_configs
        from safari_ros.evaluation.settings import load_evaluation_config

        register_model_configs()  # the harness's small architectures (SafariEval-ViT-Tiny)
        presets = load_evaluation_config()["presets"]
        if preset["model"] not in presets:
            raise ConfigError(f"preset {args.preset}: model {preset['model']!r} is not a "
                              f"preset of config/evaluation.yaml ({sorted(presets)})")
        for key, value in ((presets[preset["model"]] or {}).get("overrides") or {}).items():
            if key.startswith("tabletop."):
                _set(cfg, key.removeprefix("tabletop."), value)
    for key, value in (preset.get("set") or {}).items():
        _set(cfg, key, value)
    for option, value in (preset.get(args.command) or {}).items():
        if not hasattr(args, option):
            raise ConfigError(f"preset {args.preset}: {args.command} has no option {option!r}")
        if getattr(args, option) is None:
            setattr(args, option, value)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    for folder in args.model_config_dir:
        open_clip.add_model_config(Path(folder))
    cfg = load_config(args.config)
    if args.preset:
        _apply_preset(cfg, args)
    return apply_overrides(cfg, args.set)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="config YAML (default: $SAFARI_CONFIG or the repository's)")
    p.add_argument("--preset", choices=PRESET_NAMES,
                   help="size of the run, from config/pretrain_presets.yaml: tiny (seconds, "
                        "tiny random-init ViT), cpu (the shipped backbone), full (for a GPU); "
                        "options and --set win over it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. learning.split_layer_k=2 (repeatable)")
    p.add_argument("--model-config-dir", action="append", default=[], metavar="DIR",
                   help="folder of extra open_clip model config JSON files (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of safari_pretrain."""
    parser = argparse.ArgumentParser(prog="safari_pretrain", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demos = sub.add_parser("demos", help="record scripted-oracle demonstrations as an MCAP bag")
    _common(demos)
    demos.add_argument("--out", required=True, help="bag directory to create (must not exist)")
    demos.add_argument("--episodes-per-template", type=int,
                       help=f"episodes of each template (default: the preset's, else "
                            f"{DEMO_EPISODES})")
    demos.add_argument("--templates", nargs="+", default=list(TEMPLATES), choices=TEMPLATES)
    demos.add_argument("--epsilon", type=float, default=0.1,
                       help="per-step probability that a random action starts")
    demos.add_argument("--hold", type=int, default=3, help="steps a random action is held")
    demos.add_argument("--drift-prob", type=float, default=0.5,
                       help="share of episodes with one unsafe drift down into the table")
    demos.add_argument("--seed", type=int, default=0)
    demos.add_argument("--split", default="train", help="task split (train / heldout)")
    demos.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"),
                       help="camera resolution (default: sim.camera of the config)")
    demos.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])

    bb = sub.add_parser("backbone", help="pre-train the backbone CLIP on rendered tabletop "
                        "scenes (writes weights + model card)")
    _common(bb)
    bb.add_argument("--out", required=True, help="weights file to write (.safetensors); the "
                    "card goes beside it")
    bb.add_argument("--data-config", help="scene and training settings (default: "
                    "config/backbone.yaml)")
    bb.add_argument("--images", type=int, help="training scenes to render")
    bb.add_argument("--heldout-images", type=int, help="held-out evaluation scenes")
    bb.add_argument("--steps", type=int, help="optimiser steps")
    bb.add_argument("--batch-size", type=int)
    bb.add_argument("--seed", type=int)
    bb.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="rendering processes (default: %(default)s)")
    bb.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    bb.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    bb.add_argument("--cache-dir", default=str(default_cache_dir().parent / "scenes"),
                    help="rendered scenes are kept here for a re-run (default: %(default)s)")
    bb.add_argument("--no-progress", action="store_true", help="no tqdm bars")

    train = sub.add_parser("train", help="pre-train adapters and heads on bags")
    _common(train)
    train.add_argument("bags", nargs="+", help="bag paths (rosbag2 directory, .mcap, .bag)")
    train.add_argument("--out", required=True, help="run directory: checkpoint, report, state")
    train.add_argument("--topic-map", help="topic map YAML (default config/bag_topics.yaml)")
    train.add_argument("--label-from-motion", action="store_true",
                       help="the bags are logs of a robot that did not run SAFARI (camera, joint "
                            "states, maybe controller commands): label each step with the "
                            "primitive that explains its motion, cost it with the shield's "
                            "hard-limit checks (the topic map's action, feedback, reward and "
                            "cost streams are not read); annotations beside a bag give "
                            "episodes, instruction and success")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int, help="global batch (split over DDP ranks)")
    train.add_argument("--heldout-fraction", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--cache-dir", default=str(default_cache_dir()),
                       help="feature cache folder (default: %(default)s)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--skip-bad", action="store_true",
                       help="train on the valid part of bad bags; what was skipped and why is "
                            "printed per bag and counted in the report")
    train.add_argument("--resume", action="store_true",
                       help="continue from the run directory's state file when there is one")
    train.add_argument("--stop-after-epochs", type=int, metavar="N",
                       help="leave after N epochs of this invocation (resume later)")
    train.add_argument("--plot", action="store_true", help="write loss_curve.png")
    train.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return parser


def _demos(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.image_size:
        cfg["sim"]["camera"].update(width=args.image_size[0], height=args.image_size[1])
    episodes = args.episodes_per_template
    summary = generate_demos(cfg, args.out,
                             episodes_per_template=DEMO_EPISODES if episodes is None else episodes,
                             epsilon=args.epsilon, hold=args.hold,
                             drift_prob=args.drift_prob, seed=args.seed,
                             templates=args.templates, split=args.split, storage=args.storage)
    print(json.dumps(summary.as_dict(), indent=2))
    return 0


def _train(args: argparse.Namespace) -> int:
    cfg = _config(args)
    settings = TrainSettings.from_config(
        learning_config(cfg).pretrain, epochs=args.epochs, batch_size=args.batch_size,
        heldout_fraction=args.heldout_fraction, seed=args.seed, cache_dir=args.cache_dir,
        device=args.device, skip_bad=args.skip_bad, resume=args.resume,
        stop_after_epochs=args.stop_after_epochs, plot=args.plot, progress=not args.no_progress)
    topic_map = TopicMap.load(args.topic_map) if args.topic_map else None
    if args.label_from_motion:
        topic_map = (topic_map or TopicMap.load()).for_motion_labels()
    result = run_pretrain(cfg, args.bags, args.out, settings, topic_map)
    _print_skipped(result.report["data"].get("skipped_per_bag") or {})
    if result.checkpoint is not None:
        held = result.report["heldout"]
        labels = result.report.get("labels")
        print(json.dumps({"checkpoint": str(result.checkpoint),
                          "report": str(Path(args.out) / "pretrain_report.json"),
                          **{k: held.get(k) for k in ("action_accuracy", "constraint_auroc",
                                                      "constraint_ece", "action_recall")},
                          "train_action_accuracy": result.report["train_fit"].get(
                              "action_accuracy"),
                          **({"labels": {k: labels[k] for k in (
                              "steps", "labelled", "skipped", "skipped_by_reason", "residual",
                              "residual_threshold")}} if labels else {})}, indent=2))
    elif not result.finished:
        log.info("stopped after epoch %d of %d; continue with --resume",
                 result.report["epochs_done"], settings.epochs)
    return 0 if result.finished else 1


def _print_skipped(per_bag: dict[str, dict[str, Any]]) -> None:
    """What each bag's read left out and why, on stderr (the JSON summary stays on stdout)."""
    for bag, entry in per_bag.items():
        lines = describe_skipped(entry.get("skipped") or {})
        if not lines:
            continue
        print(f"safari_pretrain train: {bag}: skipped", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)
        for problem in entry.get("problems") or []:
            print(f"  - {problem}", file=sys.stderr)


def _backbone(args: argparse.Namespace) -> int:
    cfg = _config(args)
    data_cfg = load_backbone_data_config(cfg, args.data_config)
    settings = BackboneTrainSettings.from_config(
        data_cfg, images=args.images, heldout_images=args.heldout_images, steps=args.steps,
        batch_size=args.batch_size, seed=args.seed, workers=args.workers, device=args.device,
        progress=not args.no_progress, cache_dir=args.cache_dir)
    if args.threads:
        torch.set_num_threads(args.threads)
    card = train_backbone(cfg, data_cfg, args.out, settings,
                          command=["safari_pretrain", *(args.argv or [])])
    print(json.dumps({"weights": str(args.out), "sha256": card["sha256"],
                      "heldout": card["heldout"],
                      "random_init_reference": card["random_init_reference"]}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the safari_pretrain console script."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return {"demos": _demos, "train": _train, "backbone": _backbone}[args.command](args)
    except (BagError, ConfigError, BackboneError, FileNotFoundError, FileExistsError) as exc:
        print(f"safari_pretrain {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
