"""Shield decision time: plan a primitive on the Panda IK, predict its motion and decide, with the
motion checked along the controller's cubic path (9 samples of TCP, links and joints, as shipped)
and along the straight TCP line only (no path, no link points), in the same run, on random
states with random joint velocities.

Run from the repository root: PYTHONPATH=src/safari_ros .venv/bin/python bench/bench_shield.py
Prints figures only (not a test).
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from safari_ros.config import action_specs, load_config, safety_limits
from safari_ros.robot import kinematics as kin
from safari_ros.robot.primitives import PrimitivePlanner
from safari_ros.safety.shield import PredictedMotion, Shield

N = 2000


def main() -> None:
    """Print p50/p99 decision times of both variants and their ratio."""
    cfg = load_config()
    shield = Shield(safety_limits(cfg), action_specs(cfg), kin.JOINT_LOWER, kin.JOINT_UPPER,
                    kin.JOINT_VELOCITY_LIMIT)
    planner = PrimitivePlanner(cfg)
    home = np.asarray(cfg["sim"]["home_joint_positions"], float)
    rng = np.random.default_rng(0)
    states = [np.clip(home + rng.normal(0, 0.3, 7), kin.JOINT_LOWER, kin.JOINT_UPPER)
              for _ in range(N)]
    rates = [rng.normal(0, 0.2, 7) for _ in range(N)]
    actions = rng.integers(len(shield.actions), size=N)
    row = np.zeros(len(shield.actions))
    times: dict[str, list[float]] = {"path": [], "straight": []}
    reasons: dict[str, Counter[str]] = {"path": Counter(), "straight": Counter()}
    for q, qd, a in zip(states, rates, actions, strict=True):
        for variant in ("path", "straight"):
            planner.reset()
            t0 = time.perf_counter()
            plan = planner.plan(shield.actions[a], q, 0.04, qd)
            if variant == "path":
                motion = plan.predicted()
            else:
                motion = PredictedMotion(plan.ee_start, plan.ee_end, plan.duration_s,
                                         plan.arm_target if plan.ik_converged else None)
            verdict = shield.decide(int(a), row, motion, 0.0, 0.0)
            times[variant].append(time.perf_counter() - t0)
            if verdict.intervened:
                reasons[variant][verdict.reason.split(":")[0].split(";")[0]] += 1
    for variant, ts in times.items():
        ms = np.array(ts) * 1e3
        print(f"{variant:9s}: plan + predict + decide p50 {np.percentile(ms, 50):.2f} ms, "
              f"p99 {np.percentile(ms, 99):.2f} ms; refused {sum(reasons[variant].values())} "
              f"of {N} ({dict(reasons[variant])})")
    ratio = np.median(times["path"]) / np.median(times["straight"])
    print(f"ratio path / straight (p50): {ratio:.2f}")


if __name__ == "__main__":
    main()
