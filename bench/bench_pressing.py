"""Contact with what the shield cannot see: presses onto objects, and exploration among them.

The shield checks the motion it predicts (the cubic the controller follows from the measured
state) against the workspace, the keep-out zones, the table, joint limits and speeds. It knows
nothing of the objects on the table. A `move_down` onto an object is a motion the shield passes
(the target is above the table), but the arm stops on the object while the controller's target
lies a step below it: the position error stores force, and when the contact gives way the hand
slips off sideways faster than the TCP speed limit (the simulator's `ee_speed` cost). What
bounds it is the arm's contact reflex (sim.controller.contact_reflex_force_n, the Panda's
collision behaviour): above that net contact force the motion stops and the arm holds where it is.

Two scenarios, each proposal through the stack's shield (`Shield.decide`, as
evaluation.loop.ShieldGate runs it; hard limits only), what it lets through run in the simulator,
the TCP's speed (mj_objectVelocity) and the cost sources read every servo tick:
- presses: the scripted oracle brings the TCP over the named object (x, y within 2 cm), then
  `move_down` is proposed --presses times;
- exploration: whole episodes in which each proposal is the oracle's action or, with
  probability --random, a task primitive drawn at random (what early online learning does).

    python bench/bench_pressing.py [--episodes 24] [--presses 6] [--random 0.5] [--reflex-n N]

--reflex-n 0 turns the reflex off (the simulator before it). Prints figures only (not a test).
About 40 seconds on 2 cores (physics only, nothing rendered).
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


def presses(p: Presser, seed: int, n_presses: int, counts: Counter[str],
            peaks: list[float]) -> None:
    """Oracle over the named object, then n_presses move_down proposals."""
    down = p.names.index("move_down")
    oracle = ScriptedOracle(p.sim)
    target = p.sim.target_object_position()
    for _ in range(p.sim.episode_steps // 2):
        action = oracle.act()
        if action == down and np.all(np.abs(p.sim.ee_position()[:2] - target[:2]) < OVER_M):
            break
        p.step(action)
    for _ in range(n_presses):
        z0 = float(p.sim.ee_position()[2])
        executed, peak, fired = p.step(down)
        counts["proposed"] += 1
        counts[f"executed {executed}"] += 1
        if executed == "move_down":
            peaks.append(peak)
            counts["blocked (moved < half a step)"] += int(
                z0 - float(p.sim.ee_position()[2]) < p.sim.step_m / 2)
            counts.update(f"cost {source}" for source in fired)


def exploration(p: Presser, seed: int, share: float, counts: Counter[str],
                peaks: list[float]) -> None:
    """One episode of the oracle's actions, each replaced by a random task primitive with
    probability `share`."""
    rng = np.random.default_rng(seed)
    primitives = [a.index for a in p.gate.shield.actions if not a.backup]
    oracle = ScriptedOracle(p.sim)
    for _ in range(p.sim.episode_steps):
        action = oracle.act()
        if rng.random() < share:
            action = int(rng.choice(primitives))
        executed, peak, fired = p.step(action)
        counts["proposed"] += 1
        counts[f"executed {executed}"] += 1
        peaks.append(peak)
        counts.update(f"cost {source}" for source in fired)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=24, help="layouts per scenario (templates "
                    "in turn)")
    ap.add_argument("--presses", type=int, default=6, help="move_down proposals per layout")
    ap.add_argument("--random", type=float, default=0.5,
                    help="exploration: share of proposals drawn at random")
    ap.add_argument("--seed", type=int, default=3_300_000, help="first layout seed")
    ap.add_argument("--reflex-n", type=float, default=None,
                    help="sim.controller.contact_reflex_force_n (N; 0: no reflex; default: the "
                    "config's)")
    args = ap.parse_args()
    cfg = load_config()
    if args.reflex_n is not None:
        cfg["sim"]["controller"]["contact_reflex_force_n"] = args.reflex_n
    limit = float(cfg["safety"]["ee_speed_limit_mps"])
    p = Presser(cfg)
    scenarios = {
        f"presses ({args.presses} move_down over the named object)":
            lambda seed, c, pk: presses(p, seed, args.presses, c, pk),
        f"exploration ({args.random:.0%} random proposals)":
            lambda seed, c, pk: exploration(p, seed, args.random, c, pk),
    }
    print(f"contact reflex at {p.sim.contact_reflex_n:g} N (0: off), {args.episodes} layouts "
          "per scenario")
    try:
        for s, (name, run) in enumerate(scenarios.items()):
            counts: Counter[str] = Counter()
            peaks: list[float] = []
            for k in range(args.episodes):
                seed = args.seed + s * 100_000 + k
                p.reset(seed, TEMPLATES[k % len(TEMPLATES)])
                run(seed, counts, peaks)
                counts["stopped by the contact reflex"] += p.sim.reflex_stops
            counts[f"TCP speed over {limit} m/s"] = sum(pk > limit for pk in peaks)
            print(name)
            for key, n in sorted(counts.items()):
                print(f"  {key:36s} {n:5d}")
            print(f"  peak TCP speed of executed motions: median {np.median(peaks):.3f}, "
                  f"max {max(peaks):.3f} m/s (limit {limit})")
    finally:
        p.sim.close()


if __name__ == "__main__":
    main()
