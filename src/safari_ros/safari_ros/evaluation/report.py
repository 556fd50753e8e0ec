"""Aggregation over seeds (mean and 95% t interval), the Markdown report and the PNG plots."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on robots, CI or the device machines
import matplotlib.pyplot as plt

from safari_ros.evaluation.settings import METHODS_GROUP, Plan
from safari_ros.evaluation.stats import Interval, mean_ci, moving_average
from safari_ros.sim.tabletop import COST_SOURCES

__all__ = [
    "BEHAVIOUR_COLUMNS",
    "COMPUTE_COLUMNS",
    "SOURCE_COLUMNS",
    "TASK_COLUMNS",
    "aggregate",
    "markdown_report",
    "plot_curves",
    "source_columns",
]

# (metric key, column header, digits)
TASK_COLUMNS = (
    ("deploy_train_success", "success, deployed", 2),
    ("deploy_heldout_success", "success, held-out", 2),
    ("train_cost_cumulative", "violations in training (cumulative)", 1),
    ("deploy_train_cost_per_episode", "violations deployed (/episode)", 2),
    ("deploy_heldout_cost_per_episode", "violations held-out (/episode)", 2),
    ("train_interventions_per_episode", "shield interventions, training (/episode)", 1),
    ("deploy_train_interventions_per_episode", "shield interventions, deployed (/episode)", 1),
    ("steps_to_target", "env steps to target success", 0),
)
# Which monitor fired: what the shield prevents (keep-out, speed, limits) and what it cannot
# foresee (an object pushed into the fragile one, contact). The tabletop's sources; a domain
# with more (HRI: separation, person contact) gets a column for each (source_columns).
SOURCE_COLUMNS = tuple((f"train_violations_{name}", name, 1) for name in COST_SOURCES)
SOURCE_PREFIX = "train_violations_"


def source_columns(agg: dict[str, dict[str, Any]]) -> tuple[tuple[str, str, int], ...]:
    """SOURCE_COLUMNS, then a column for every other cost source some run reported."""
    known = {k for k, _, _ in SOURCE_COLUMNS}
    extra = dict.fromkeys(k for e in agg.values() for k in e["metrics"]
                          if k.startswith(SOURCE_PREFIX) and k not in known)
    return SOURCE_COLUMNS + tuple((k, k[len(SOURCE_PREFIX):], 1) for k in extra)
# What the policy does as it learns, first vs last success window of training: a policy that
# collapses onto holding still shows falling entropy and motion share at a flat return.
BEHAVIOUR_COLUMNS = (
    ("train_return_first", "return, first episodes", 2),
    ("train_return_final", "return, last episodes", 2),
    ("train_entropy_first", "policy entropy (nats), first", 2),
    ("train_entropy_final", "policy entropy (nats), last", 2),
    ("train_motion_share_first", "share of arm moves, first", 2),
    ("train_motion_share_final", "share of arm moves, last", 2),
)
COMPUTE_COLUMNS = (
    ("wall_clock_s", "wall-clock (s)", 1),
    ("train_wall_clock_s", "of which training (s)", 1),
    ("peak_memory_mb", "peak memory (MiB)", 0),
    ("trainable_params", "trainable parameters", 0),
    ("updates", "SCAPO updates", 0),
    ("final_lambda", "final lambda", 2),
)


def aggregate(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per configuration name: status, seeds, and each metric's Interval over the ok seeds.

    steps_to_target is averaged over the seeds that reached the target; ``reached`` counts them.
    """
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_name[r["name"]].append(r)
    out: dict[str, dict[str, Any]] = {}
    for name, runs in by_name.items():
        ok = [r for r in runs if r["status"] == "ok"]
        entry: dict[str, Any] = {
            "group": runs[0]["group"],
            "seeds": [r["seed"] for r in ok],
            "not_ok": {r["seed"]: f"{r['status']}: {r['reason']}" for r in runs if r not in ok},
            "metrics": {},
        }
        keys = dict.fromkeys(k for r in ok for k in r["metrics"])
        for key in keys:
            values = [r["metrics"][key] for r in ok]
            present = [float(v) for v in values if v is not None and not _nan(v)]
            entry["metrics"][key] = mean_ci(present)
        entry["reached"] = sum(r["metrics"]["steps_to_target"] is not None for r in ok)
        out[name] = entry
    return out


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _cell(entry: dict[str, Any], key: str, digits: int) -> str:
    if not entry["seeds"]:
        return "-"
    ci: Interval = entry["metrics"].get(key, mean_ci([]))
    if key == "steps_to_target":
        if entry["reached"] == 0:
            return "not reached"
        return f"{ci.format(digits)} ({entry['reached']}/{len(entry['seeds'])} seeds)"
    return ci.format(digits)


def _table(names: list[str], agg: dict[str, dict[str, Any]], columns) -> list[str]:
    lines = ["| run | seeds | " + " | ".join(h for _, h, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for name in names:
        e = agg.get(name)
        if e is None:
            continue
        if not e["seeds"]:
            reason = next(iter(e["not_ok"].values()), "no result")
            lines.append(f"| {name} | 0 | {reason} |" + " |" * (len(columns) - 1))
            continue
        cells = [_cell(e, k, d) for k, _, d in columns]
        lines.append(f"| {name} | {len(e['seeds'])} | " + " | ".join(cells) + " |")
    return lines


def _curves(runs: list[dict[str, Any]], window: int) -> dict[str, list[list[float]]]:
    """Per-seed learning curves by training episode: success rate (trailing window) and
    cumulative violations."""
    success, cumulative = [], []
    for r in runs:
        eps = r["train"]
        success.append(moving_average([float(e["success"]) for e in eps], window))
        total, cum = 0.0, []
        for e in eps:
            total += e["cost"]
            cum.append(total)
        cumulative.append(cum)
    return {"success": success, "cumulative_cost": cumulative}


def _plot_band(ax, series: list[list[float]], label: str, clip: tuple[float, float] | None = None
               ) -> None:
    """Mean over seeds with the seeds' 95% t interval as a band (clipped to `clip`: a rate's
    interval cannot leave [0, 1] however few the seeds)."""
    n = min(len(s) for s in series)
    if n == 0:
        return
    stats = [mean_ci([s[i] for s in series]) for i in range(n)]
    x = list(range(1, n + 1))
    line = ax.plot(x, [c.mean for c in stats], label=label)[0]
    if len(series) > 1:
        low, high = [c.low for c in stats], [c.high for c in stats]
        if clip is not None:
            low = [min(max(v, clip[0]), clip[1]) for v in low]
            high = [min(max(v, clip[0]), clip[1]) for v in high]
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)


def plot_curves(
    results: list[dict[str, Any]], plan: Plan, window: int, out_dir: Path
) -> list[Path]:
    """Learning curves (mean over seeds, 95% band) of success and cumulative violations: one
    figure per metric for the methods, and one per metric with a panel per ablation group."""
    ok: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r["status"] == "ok":
            ok[r["name"]].append(r)
    curves = {name: _curves(runs, window) for name, runs in ok.items()}
    labels = {"success": f"success rate (last {window} episodes; band: 95% t over seeds)",
              "cumulative_cost": "cumulative violations (sum of c_t)"}
    ablation_groups = [g for g in plan.groups if g != METHODS_GROUP]
    paths = []
    for metric, ylabel in labels.items():
        for kind, groups in (("methods", [METHODS_GROUP]), ("ablations", ablation_groups)):
            if not groups:
                continue
            fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
            rate = metric == "success"
            for ax, group in zip(axes[0], groups, strict=True):
                for name in plan.groups[group]:
                    if name in curves:
                        _plot_band(ax, curves[name][metric], name, (0.0, 1.0) if rate else None)
                ax.set_title(group)
                ax.set_xlabel("training episode")
                ax.set_ylabel(ylabel)
                if rate:  # the same fixed axis in every report (an all-zero curve included)
                    ax.set_ylim(0.0, 1.0)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
            fig.tight_layout()
            path = out_dir / f"{kind}_{metric}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths


def markdown_report(
    plan: Plan, agg: dict[str, dict[str, Any]], meta: dict[str, Any], plots: list[Path]
) -> str:
    """The report: set-up (weights stated), the methods' and ablations' tables, plots, notes."""
    ref = plan.reference
    bb = ref["tabletop"]["learning"]["backbone"]
    proto, sim = ref["protocol"], ref["tabletop"]["sim"]
    sampling = ref["tabletop"]["nodes"]["policy_node"]["parameters"].get("sampling", True)
    acting = "sampled from pi(a|s)" if sampling else "argmax of pi(a|s)"
    weights = (f"local file `{bb['weights']}` ({meta['backbone_id']})" if bb["weights"] else
               f"**random-initialised** (seed {bb['random_init_seed']}, no pretrained weights): "
               "the CLIP features carry no knowledge, so these numbers show that the harness "
               "works, not what SAFARI can do with a real CLIP")
    lines = [
        f"# SAFARI evaluation: preset `{plan.preset}`",
        "",
        f"- command: `{meta['command']}`",
        f"- started {meta['started']}, total runtime {meta['runtime_s']:.0f} s on {meta['device']}"
        f" (torch threads: {meta['threads']})",
        f"- backbone: `{bb['architecture']}` at {bb['image_size']} px, weights: {weights}",
        f"- protocol: {proto['train_episodes']} online training episodes, then "
        f"{proto['eval_episodes']} deployment episodes on each of {proto['eval_splits']}; "
        f"{sim['episode_steps']} steps per episode, {proto['num_envs']} environments stepped "
        f"together; seeds {plan.seeds}",
        f"- cost limit: d = {meta['cost_limit_episode']} per episode (undiscounted), "
        f"delta = {meta['delta']:.4f} (discounted, OSRL conversion); SCAPO's lambda is driven by "
        + ("the undiscounted episode cost against d" if meta.get("cost_measure") == "episode"
           else "the discounted episode cost J_c against delta"),
        "- cells: mean over seeds [95% t interval]; a violation is a step with cost c_t = 1 "
        "(keep-out, fragile contact, speed, joint limits, table); deployment uses the shield as "
        "configured for the method; sample efficiency = environment steps until the success "
        f"rate over the last {proto['success_window']} training episodes reaches "
        f"{proto['target_success']} (mean over the seeds that reached it)",
        f"- actions: {acting} in training and deployment (policy_node's `sampling`); "
        "zero_shot never learns, so its 'training' columns are the same interaction budget "
        "with its fixed policy",
        "",
        "## Methods",
        "",
        *_table(plan.groups[METHODS_GROUP], agg, TASK_COLUMNS),
        "",
        "### Violations in training by source (steps with that source active, cumulative)",
        "",
        *_table(plan.groups[METHODS_GROUP], agg, source_columns(agg)),
        "",
        "### Policy behaviour in training (first vs last success window)",
        "",
        *_table(plan.groups[METHODS_GROUP], agg, BEHAVIOUR_COLUMNS),
        "",
        "### Compute",
        "",
        *_table(plan.groups[METHODS_GROUP], agg, COMPUTE_COLUMNS),
        "",
        "### What each baseline changes (resolved-config keys that differ from SCAPO)",
        "",
    ]
    overrides = {r.name: r.overrides for r in plan.runs}

    def changes(name: str) -> str:
        items = ", ".join(f"`{k}: {v}`" for k, v in overrides[name].items())
        return f"- {name}: {items or '(reference)'}"

    lines += [changes(n) for n in plan.groups[METHODS_GROUP]]
    for group, names in plan.groups.items():
        if group == METHODS_GROUP:
            continue
        lines += ["", f"## Ablation: {group}", ""]
        lines += _table(names, agg, (*TASK_COLUMNS[:5], BEHAVIOUR_COLUMNS[1], BEHAVIOUR_COLUMNS[3],
                                     COMPUTE_COLUMNS[3]))
        lines += ["", *(changes(n) for n in names)]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    problems = [(n, s, why) for n, e in agg.items() for s, why in e["not_ok"].items()]
    if problems:
        lines += ["", "## Runs not completed", ""]
        lines += [f"- {n} seed {s}: {why}" for n, s, why in problems]
    lines += ["", "Per-run resolved configs and per-episode records: `runs/<name>/seed<k>/`; "
              "aggregates: `summary.json`.", ""]
    return "\n".join(lines)
