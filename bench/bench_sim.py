"""Simulator throughput: physics steps/s, policy steps/s without rendering, RGB-D render time.

Run from the repository root: PYTHONPATH=src/safari_ros .venv/bin/python bench/bench_sim.py
Prints figures only (not a test).
"""

from __future__ import annotations

import copy
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

# The GL backend must be chosen (above) before mujoco loads.
import mujoco
import numpy as np

from safari_ros.config import load_config
from safari_ros.sim import TabletopSim


def _rate(fn: object, seconds: float = 3.0) -> tuple[float, int]:
    """Calls per second of fn() over about `seconds`."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()  # type: ignore[operator]
        n += 1
    return n / (time.perf_counter() - start), n


def main() -> None:
    """Print the figures."""
    cfg = load_config()
    sim = TabletopSim(cfg)
    sim.reset(seed=0)
    rate, _ = _rate(lambda: mujoco.mj_step(sim.model, sim.data, nstep=100))
    dt = sim.model.opt.timestep
    print(f"physics: {100 * rate:,.0f} steps/s (dt {dt} s: {100 * rate * dt:.0f}x real time)")

    rng = np.random.default_rng(0)
    moves = [a.index for a in sim.actions if not a.backup]

    def policy_step() -> None:
        if sim.steps >= sim.episode_steps:
            sim.reset(seed=int(rng.integers(1000)))
        sim.step(int(rng.choice(moves)))

    rate, _ = _rate(policy_step)
    print(f"policy steps (no rendering, {sim.control_period} s each): {rate:.1f} steps/s")
    rate, _ = _rate(lambda: sim.reset(seed=int(rng.integers(1000))), 1.0)
    print(f"reset: {1000 / rate:.1f} ms")
    sim.close()

    for width, height in ((224, 224), (640, 480)):
        c = copy.deepcopy(cfg)
        c["sim"]["camera"].update(width=width, height=height)
        s = TabletopSim(c)
        s.render_rgbd()  # first frame opens the GL context
        rate, n = _rate(s.render_rgbd, 3.0)
        print(f"render RGB-D {width}x{height}: {1000 / rate:.1f} ms per frame ({n} frames)")
        s.close()


if __name__ == "__main__":
    main()
