"""Report of the main job: a JSON of the figures and a PNG of the learning curves, plus (when
the job evaluated them) the deployment of the pre-trained and final adapters: its section of the
JSON, two panels of the PNG and a printed table."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from safari_ros.evaluation.stats import wilson

CURVES = (
    ("success", "success (moving mean of 5)"),
    ("return", "episode return"),
    ("cost", "episode cost (violating steps)"),
    ("cumulative_violations", "cumulative violations"),
    ("lagrange_multiplier", "lambda"),
    ("interventions", "shield interventions per episode"),
)


def moving_mean(values: Sequence[float], window: int = 5) -> np.ndarray:
    """Trailing mean over up to `window` values (the first points use what there is)."""
    v = np.asarray(values, float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    n = np.minimum(np.arange(1, len(v) + 1), window)
    return (c[1:] - c[np.arange(len(v)) + 1 - n]) / n


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of a run: success rate (all, last 10), violations, interventions, final lambda."""
    if not rows:
        return {"episodes": 0}
    success = [float(r["success"]) for r in rows]
    return {
        "episodes": len(rows),
        "success_rate": float(np.mean(success)),
        "success_rate_last_10": float(np.mean(success[-10:])),
        "mean_return": float(np.mean([r["return"] for r in rows])),
        "total_violations": int(rows[-1]["cumulative_violations"]),
        "total_interventions": int(sum(r["interventions"] for r in rows)),
        "final_lagrange_multiplier": float(rows[-1]["lagrange_multiplier"]),
        "learner_updates": int(rows[-1].get("updates", 0)),
        # near 0: the policy has collapsed onto one action (often holding still)
        "final_policy_entropy": float(rows[-1].get("policy_entropy", float("nan"))),
    }


def success_band(successes: Sequence[bool], window: int = 5) -> tuple[list[float], list[float]]:
    """Wilson 95% interval of the trailing success rate at every episode (the window's first
    points use what there is): one run has no seeds to spread over, so the band says how much
    a rate from this few episodes can tell."""
    lows, highs = [], []
    for i in range(len(successes)):
        recent = successes[max(0, i + 1 - window):i + 1]
        ci = wilson(sum(bool(s) for s in recent), len(recent))
        lows.append(ci.low)
        highs.append(ci.high)
    return lows, highs


def write_report(rows: list[dict[str, Any]], folder: Path, meta: dict[str, Any],
                 deployment: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write report.json (meta, summary, per-episode rows, the deployment section when given)
    and learning_curves.png (with the deployment's panels when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    json_path = folder / "report.json"
    report: dict[str, Any] = {"meta": meta, "summary": summary, "episodes": rows}
    if deployment is not None:
        report["deployment"] = deployment
    json_path.write_text(json.dumps(report, indent=2))
    fig, axes = plt.subplots(2, 4, figsize=(17, 7), constrained_layout=True)
    episodes = [r["episode"] for r in rows]
    for ax, (key, title) in zip(axes.flat, CURVES, strict=False):
        values = [float(r[key]) for r in rows]
        if key == "success":
            values = moving_mean(values).tolist()
            low, high = success_band([bool(r["success"]) for r in rows])
            ax.fill_between(episodes, low, high, alpha=0.2, label="95% Wilson interval")
            ax.set_ylim(0.0, 1.0)  # a rate: the same fixed axis in every report
            ax.legend(fontsize=8, loc="upper left")
        ax.plot(episodes, values, marker="o", markersize=3)
        ax.set_title(title)
        ax.set_xlabel("episode")
        ax.grid(alpha=0.3)
    deployment_axes = list(axes.flat[len(CURVES):])
    if deployment is not None:
        _plot_deployment(deployment, *deployment_axes)
    else:
        for ax in deployment_axes:
            ax.set_axis_off()
    fig.suptitle(f"SAFARI tabletop, online SCAPO: {meta.get('backbone', '')}")
    png_path = folder / "learning_curves.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return {"json": json_path, "png": png_path}


def _bars(ax: Any, section: dict[str, Any], metric: str) -> None:
    """Grouped bars per split, one per checkpoint, with the 95% interval as error bars."""
    splits = section["protocol"]["splits"]
    labels = list(section["checkpoints"])
    width = 0.8 / max(1, len(labels))
    for k, label in enumerate(labels):
        stats = [section["splits"][s][label][metric] for s in splits]
        means = [_num(v["mean"]) for v in stats]
        below = [_num(v["mean"]) - _num(v["low"], _num(v["mean"])) for v in stats]
        above = [_num(v["high"], _num(v["mean"])) - _num(v["mean"]) for v in stats]
        x = [i + (k - (len(labels) - 1) / 2) * width for i in range(len(splits))]
        ax.bar(x, means, width, yerr=[below, above], capsize=4, label=label, alpha=0.8)
    ax.set_xticks(range(len(splits)), splits)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)


def _plot_deployment(section: dict[str, Any], success_ax: Any, cost_ax: Any) -> None:
    n = section["protocol"]["episodes_per_split"]
    _bars(success_ax, section, "success")
    success_ax.set_ylim(0.0, 1.0)  # a rate: fixed axis
    success_ax.set_title("deployed success, greedy + shield (95% Wilson)")
    success_ax.set_xlabel(f"split ({n} episodes each, the same seeds for every checkpoint)")
    _bars(cost_ax, section, "cost_per_episode")
    cost_ax.axhline(section["protocol"]["cost_limit_episode"], color="red", linestyle="--",
                    label="cost limit d")
    cost_ax.set_ylim(bottom=0.0)
    cost_ax.legend(fontsize=8)
    cost_ax.set_title("deployed cost per episode (95% t)")
    cost_ax.set_xlabel("split")


def _num(value: float | None, default: float = math.nan) -> float:
    """JSON null (no interval) as `default`."""
    return default if value is None else float(value)


def _cell(stats: dict[str, Any], digits: int = 2) -> str:
    mean, low, high = (_num(stats[k]) for k in ("mean", "low", "high"))
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def behaviour_table(section: dict[str, Any]) -> list[str]:
    """What each deployed policy did: does it move, what the shield refused (hard limit or
    learned check, per episode) and what it proposed most."""
    head = (f"{'split':8} {'adapters':9} {'moves (share)':14} {'refused: hard limit':20} "
            f"{'refused: C(s,a)':16} most proposed")
    lines = ["behaviour (deployment):", head, "-" * len(head)]
    for split in section["protocol"]["splits"]:
        for label in section["checkpoints"]:
            b = section["splits"][split][label].get("behaviour")
            if b is None:  # a report written before the behaviour section existed
                continue
            top = ", ".join(f"{a} {share:.2f}" for a, share in
                            list(b["proposed_share"].items())[:3])
            lines.append(f"{split:8} {label:9} {_num(b['motion_share']['mean']):<14.2f} "
                         f"{_num(b['refused_hard_per_episode']['mean']):<20.1f} "
                         f"{_num(b['refused_learned_per_episode']['mean']):<16.1f} {top}")
    return lines


def deployment_table(section: dict[str, Any]) -> str:
    """The deployment section as a fixed-width table (what the main job prints last)."""
    proto = section["protocol"]
    head = (f"{'split':8} {'adapters':9} {'success [95% Wilson]':22} {'cost/episode [95% t]':22} "
            f"{'interventions/episode':24} {'steps/episode':14}")
    lines = [f"deployment: {proto['episodes_per_split']} episodes per split, {proto['acting']}; "
             f"shield: {proto['shield']}; environment seeds {proto['env_seeds'][0]}.."
             f"{proto['env_seeds'][1]} (the same for every checkpoint)", head, "-" * len(head)]
    for split in proto["splits"]:
        for label in section["checkpoints"]:
            s = section["splits"][split][label]
            lines.append(f"{split:8} {label:9} {_cell(s['success']):22} "
                         f"{_cell(s['cost_per_episode']):22} "
                         f"{_cell(s['interventions_per_episode'], 1):24} "
                         f"{_cell(s['steps_per_episode'], 1):14}")
        gain = section["splits"][split].get("gain")
        if gain is not None:
            lines.append(f"{split:8} {'gain':9} {_cell(gain):22} final - v1, 95% Newcombe "
                         "interval for paired proportions (pairs share a seed)")
    lines += behaviour_table(section)
    for label, info in section["checkpoints"].items():
        lines.append(f"{label}: {info['path'] or info.get('note', '')}"
                     + (f" (version {info['version']}, {info['updates']} updates)"
                        if info["path"] else ""))
    for name, target in section.get("targets", {}).items():
        lines.append(f"target {name}: {target['text']}: {'met' if target['met'] else 'NOT met'}")
    lines.append(f"evaluated in {section['wall_s']:.0f} s ({section['env_steps']} environment "
                 f"steps, {section['s_per_env_step']:.3f} s each, {proto['device']})")
    return "\n".join(lines)
