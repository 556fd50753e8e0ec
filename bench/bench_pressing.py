"""Pressing down onto an object through the shield: what the hard-limit checks cannot see.

The shield checks the motion it predicts (the cubic the controller follows from the measured
state) against the workspace, the keep-out zones, the table, joint limits and speeds. It knows
nothing of the objects on the table. A `move_down` onto an object is a motion the shield passes
(the target is above the table), but the arm stops on the object while the controller's target
lies a step below it: the position error stores force, and when the contact gives way the hand
slips off sideways faster than the TCP speed limit. The simulator counts that as an `ee_speed`
cost; in the main job's learning episodes these costs came after runs of `move_down`
(development runs of 2026-12-03: 2-5 of 20 episodes).

For each episode the scripted oracle brings the TCP over the named object (x, y within 2 cm),
then `move_down` is proposed --presses times; each proposal goes through the stack's shield
(`Shield.decide`, as evaluation.loop.ShieldGate runs it) and what it lets through runs in the
simulator. Every servo tick the TCP's speed (mj_objectVelocity) and the simulator's cost
sources are read.

    python bench/bench_pressing.py [--episodes 24] [--presses 6] [--seed 3300000]

Prints figures only (not a test). About 15 seconds on 2 cores (physics only, nothing rendered).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco
import numpy as np

from safari_ros.config import load_config
from safari_ros.evaluation.loop import ShieldGate
from safari_ros.sim import TabletopSim
from safari_ros.sim.oracle import ScriptedOracle
from safari_ros.sim.tasks import TEMPLATES

OVER_M = 0.02  # TCP this close (x, y) to the named object: start pressing
HARD_LIMITS = {"enabled": True, "learned_check": False, "learned_critic": "c"}


class Presser:
    """One simulator and the harness's shield in front of it (evaluation.loop.ShieldGate: the
    shield node's Shield, planner and backups; hard limits only), one primitive at a time."""

    def __init__(self, cfg: dict) -> None:
        self.sim = TabletopSim(cfg)
        self.gate = ShieldGate(cfg, HARD_LIMITS, gamma=0.0, n_envs=1)
        self.names = [a.name for a in self.gate.shield.actions]

    def reset(self, seed: int, template: str) -> None:
        """A new layout; the shield's planner forgets its lattice."""
        self.sim.reset(seed=seed, template=template)
        self.gate.reset(0)

    def step(self, action: int) -> tuple[str, float, set[str]]:
        """Propose `action`; returns what the shield executed, the peak TCP speed (m/s) over the
        control period and the cost sources that fired."""
        executed, _, _ = self.gate.decide(0, self.sim, action, np.zeros(len(self.names)))
        sim, m, d = self.sim, self.sim.model, self.sim.data
        sim.command_action(executed)
        sim.steps += 1
        peak, fired = 0.0, set()
        velocity = np.zeros(6)
        for _ in range(round(sim.control_period / m.opt.timestep) // sim.steps_per_tick):
            report = sim.advance(sim.steps_per_tick * m.opt.timestep)
            mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_SITE, sim._tcp, velocity, 0)
            peak = max(peak, float(np.linalg.norm(velocity[3:])))
            fired |= {k for k, v in report.cost_sources.items() if v}
        return self.names[executed], peak, fired


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=24, help="layouts (templates in turn)")
    ap.add_argument("--presses", type=int, default=6, help="move_down proposals per layout")
    ap.add_argument("--seed", type=int, default=3_300_000, help="first layout seed")
    args = ap.parse_args()
    cfg = load_config()
    limit = float(cfg["safety"]["ee_speed_limit_mps"])
    step_m = float(cfg["actions"]["step_m"])
    p = Presser(cfg)
    down = p.names.index("move_down")
    counts: Counter[str] = Counter()
    peaks: list[float] = []
    try:
        for k in range(args.episodes):
            p.reset(args.seed + k, TEMPLATES[k % len(TEMPLATES)])
            oracle = ScriptedOracle(p.sim)
            target = p.sim.target_object_position()
            for _ in range(p.sim.episode_steps // 2):
                action = oracle.act()
                over = np.all(np.abs(p.sim.ee_position()[:2] - target[:2]) < OVER_M)
                if over and action == down:
                    break
                p.step(action)
            for _ in range(args.presses):
                z0 = float(p.sim.ee_position()[2])
                executed, peak, fired = p.step(down)
                moved = z0 - float(p.sim.ee_position()[2])
                counts["proposed"] += 1
                counts[f"executed {executed}"] += 1
                if executed != "move_down":
                    continue
                peaks.append(peak)
                counts["blocked (moved < half a step)"] += int(moved < step_m / 2)
                counts[f"TCP speed over {limit} m/s"] += int(peak > limit)
                for source in fired:
                    counts[f"cost {source}"] += 1
    finally:
        p.sim.close()
    print(f"{args.episodes} layouts, {args.presses} move_down proposals each, over the named "
          "object")
    for key, n in sorted(counts.items()):
        print(f"  {key:36s} {n:5d}")
    if peaks:
        print(f"  peak TCP speed of executed presses: median {np.median(peaks):.3f}, "
              f"max {max(peaks):.3f} m/s (limit {limit})")


if __name__ == "__main__":
    main()
