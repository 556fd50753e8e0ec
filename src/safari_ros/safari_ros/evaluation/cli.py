"""safari_evaluate: does SAFARI work, and what does each part buy? (issue #7)

    safari_evaluate --preset quick|full [--weights PATH] [--out results/DIR] [--seeds N]
                    [--device auto] [--methods scapo,zero_shot] [--no-ablations]
                    [--set tabletop.sim.episode_steps=30 ...]

Runs every method and ablation of config/evaluation.yaml for each seed on the MuJoCo tabletop
(ROS-free), and writes report.md (tables), PNG learning curves, summary.json and one folder per
run with its resolved config and per-episode records.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from safari_ros.config import ConfigError, load_config
from safari_ros.core.backbone import BackboneError
from safari_ros.core.hparams import learning_config
from safari_ros.core.scapo import resolve_delta
from safari_ros.evaluation.compute import resolve_device
from safari_ros.evaluation.report import aggregate, markdown_report, plot_curves
from safari_ros.evaluation.runner import run_one
from safari_ros.evaluation.settings import (
    Plan,
    RunConfig,
    apply_overrides,
    build_plan,
    load_evaluation_config,
)

__all__ = ["evaluate", "main", "parse_args"]

log = logging.getLogger("safari_evaluate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="safari_evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="quick",
                   help="quick | full | test (= tiny, as in safari_pretrain) "
                        "(config/evaluation.yaml)")
    p.add_argument("--weights", default=None,
                   help="local open_clip weights file for the preset's architecture "
                        "(default: the config's; empty there = random init, stated in the report)")
    p.add_argument("--out", default=None, help="results folder (default results/<preset>-<time>)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--methods", default=None, help="comma-separated subset (scapo always runs)")
    p.add_argument("--no-ablations", action="store_true", help="methods only")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of the resolved config, value in YAML "
                        "(e.g. tabletop.sim.episode_steps=30); repeatable")
    p.add_argument("--config", default=None, help="tabletop config (default: config/tabletop.yaml)")
    p.add_argument("--eval-config", default=None, help="default: config/evaluation.yaml")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def _cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in args.sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    if args.weights is not None:
        out["tabletop.learning.backbone.weights"] = str(Path(args.weights).expanduser())
    if args.seeds is not None:
        out["protocol.seeds"] = args.seeds
    if args.device is not None:
        out["protocol.device"] = args.device
    return out


def _json_ready(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _warm_up(rc: RunConfig, device: torch.device) -> None:
    """One unmeasured one-episode run, so that one-time process costs (GL context, kernel and
    tokenizer caches) do not land on the first measured run's time and memory."""
    tiny = apply_overrides(rc.resolved, {"protocol.train_episodes": 1,
                                         "protocol.eval_episodes": 1, "protocol.num_envs": 1})
    with tempfile.TemporaryDirectory() as tmp:
        run_one(RunConfig(rc.name, rc.group, rc.seed, tiny), Path(tmp), device, progress=False)


def evaluate(plan: Plan, out_dir: Path, progress: bool = True, command: str = "") -> dict[str, Any]:
    """Run every run of the plan, then write report.md, the plots and summary.json.

    A run that raises is recorded as failed (with the error) and the others still run.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    proto = plan.reference["protocol"]
    device = resolve_device(proto["device"])
    if device.type == "cpu" and proto.get("cpu_threads"):
        torch.set_num_threads(int(proto["cpu_threads"]))
    started, t0 = datetime.datetime.now().isoformat(timespec="seconds"), time.perf_counter()
    _warm_up(plan.runs[0], device)
    results = []
    for k, rc in enumerate(tqdm(plan.runs, desc="runs", file=sys.stderr, disable=not progress,
                                dynamic_ncols=True)):
        label = f"[{k + 1}/{len(plan.runs)}] {rc.name} seed {rc.seed}"
        try:
            r = run_one(rc, out_dir, device, progress, label)
        except (KeyboardInterrupt, ConfigError, BackboneError):
            raise  # the whole evaluation is misconfigured: stop, do not fill a report with it
        except Exception as exc:
            traceback.print_exc()
            r = {"name": rc.name, "group": rc.group, "seed": rc.seed, "status": "failed",
                 "reason": repr(exc), "overrides": rc.overrides}
        m = r.get("metrics", {})
        tqdm.write(f"{label}: {r['status']} {r['reason']}".rstrip() + (
            f" success={m['deploy_train_success']:.2f} train_violations="
            f"{m['train_cost_cumulative']:.0f} {m['wall_clock_s']:.1f}s" if m else ""),
            file=sys.stderr)
        results.append(r)
    scapo = learning_config(plan.reference["tabletop"]).scapo
    backbone_ids = {r.get("backbone_id") for r in results if r["name"] == "scapo"}
    meta = {
        "command": command,
        "started": started,
        "runtime_s": time.perf_counter() - t0,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "backbone_id": ", ".join(sorted(b for b in backbone_ids if b)),
        "cost_limit_episode": scapo.cost_limit_episode,
        "delta": resolve_delta(scapo),
        "cost_measure": scapo.cost_measure,
    }
    agg = aggregate(results)
    plots = plot_curves(results, plan, int(proto["success_window"]), out_dir)
    report = markdown_report(plan, agg, meta, plots)
    (out_dir / "report.md").write_text(report)
    summary = {"meta": meta, "preset": plan.preset, "seeds": plan.seeds, "groups": plan.groups,
               "aggregates": agg,
               "runs": [{k: v for k, v in r.items() if k not in ("train", "deploy")}
                        for r in results]}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_ready))
    return {"report": report, "results": results, "aggregates": agg, "plots": plots,
            "meta": meta}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; exit status 1 when a run failed."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    plan = build_plan(
        args.preset,
        load_evaluation_config(args.eval_config),
        load_config(args.config),
        _cli_overrides(args),
        methods=methods,
        ablations=not args.no_ablations,
    )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) if args.out else Path("results") / f"{args.preset}-{stamp}"
    command = "safari_evaluate " + shlex.join(sys.argv[1:] if argv is None else argv)
    done = evaluate(plan, out_dir, progress=not args.quiet, command=command)
    print(done["report"])
    print(f"\nwritten to {out_dir}/ (report.md, summary.json, plots, runs/)")
    return 1 if any(r["status"] == "failed" for r in done["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
