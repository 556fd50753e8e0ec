"""Learning-curve report of an online run: a JSON of the figures and a PNG of the curves."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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


def write_report(rows: list[dict[str, Any]], folder: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Write report.json (meta, summary, per-episode rows) and learning_curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    json_path = folder / "report.json"
    json_path.write_text(json.dumps({"meta": meta, "summary": summary, "episodes": rows},
                                    indent=2))
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    episodes = [r["episode"] for r in rows]
    for ax, (key, title) in zip(axes.flat, CURVES, strict=True):
        values = [float(r[key]) for r in rows]
        if key == "success":
            values = moving_mean(values).tolist()
            ax.set_ylim(-0.05, 1.05)
        ax.plot(episodes, values, marker="o", markersize=3)
        ax.set_title(title)
        ax.set_xlabel("episode")
        ax.grid(alpha=0.3)
    fig.suptitle(f"SAFARI tabletop, online SCAPO: {meta.get('backbone', '')}")
    png_path = folder / "learning_curves.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return {"json": json_path, "png": png_path}
