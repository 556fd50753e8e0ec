"""The shield's long randomised run, with an independent re-check of every motion it executes.

Proposals (all actions, unknown ids) from realistic arm states (IK poses over the table, beside
the keep-out zones, at the workspace faces, in the middle of a motion) and adversarial ones
(random joints, near joint limits, fast joints), with malformed input mixed in (NaN / inf /
wrong-length joints, velocities and C rows, unknown velocities, stamps from the future, NaN and
stale ages). Short rollouts: after each decision the arm state is where the executed motion has
taken it one control period later.

The re-check shares nothing with the shield but the config and the simulator's model: MuJoCo
forward kinematics of the arm built by sim/scene.py, posed at dense samples along the cubic the
controller follows (every joint moves at most RECHECK_STEP_RAD between samples), with the
simulator's own geoms (mj_geomDistance) against the keep-out zones and the table, the TCP site
against the workspace box, joint positions against the limits less their margin, and TCP and
joint speeds from finite differences against the limits. A motion violates a limit when it breaks
it further than the arm already did at the start (goal: 0).

Run from the repository root (after `source scripts/env.sh`):
    python bench/bench_shield.py [--proposals 100000] [--seed 0]
Prints figures only; test/safety/test_shield_run.py runs a few hundred proposals of it.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco
import numpy as np

from safari_ros.config import load_config, safety_limits
from safari_ros.robot import kinematics as kin
from safari_ros.robot.primitives import PlannedMotion
from safari_ros.safety.shield import Ages, ArmState, Shield
from safari_ros.sim import scene

RECHECK_STEP_RAD = 1e-3  # largest joint step between two re-checked samples
RECHECK_MAX_SAMPLES = 4000
TOLERANCE_M = 1e-6  # numerical slack of "further than at the start"
NEAR_M = 0.1  # exact geom distances are computed only for geoms this close (bounding spheres)
TOLERANCE_SPEED = 1e-6
ROLLOUT_STEPS = 8
LIMIT_NAMES = ("keep_out", "table", "workspace", "joint_limits", "joint_speed", "ee_speed")


# ---------------------------------------------------------------------------- the re-check
class Recheck:
    """Hard limits of executed motions, from MuJoCo's model of the simulated arm."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.model = mujoco.MjModel.from_xml_string(scene.build_mjcf(cfg))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.qadr = np.array([m.joint(j).qposadr[0] for j in kin.ARM_JOINTS + kin.FINGER_JOINTS])
        root = m.body("panda_link0").id
        self.arm_geoms = np.array([g for g in range(m.ngeom) if m.body_rootid[m.geom_bodyid[g]]
                                   == root and m.geom_contype[g] != 0])
        limits = safety_limits(cfg)
        self.limits = limits
        self.zones = [(z.name, m.geom(f"keep_out/{z.name}").id) for z in limits.keep_out_zones]
        self.table = m.geom(scene.TABLE_GEOM).id
        self.tcp = m.site(scene.TCP_SITE).id
        self.ws_lo = limits.workspace.min.copy()
        self.ws_lo[2] = max(self.ws_lo[2], limits.table_clearance_m)
        self.ws_hi = limits.workspace.max
        # Joint ranges as the model has them, less the margin the simulator monitors.
        rng = np.array([m.joint(j).range for j in kin.ARM_JOINTS])
        self.q_lo = rng[:, 0] + limits.joint_limit_margin_rad
        self.q_hi = rng[:, 1] - limits.joint_limit_margin_rad
        self.qd_max = limits.joint_speed_fraction * kin.JOINT_VELOCITY_LIMIT
        self.closest_zone_m = math.inf  # over executed motions that start outside the margin
        self.started_in_margin = 0  # executed motions that start within the margin of a zone
        self.fastest_tcp = 0.0
        self.samples = 0

    def _pose(self, q: np.ndarray, finger: float) -> None:
        self.data.qpos[self.qadr] = [*q, finger, finger]
        mujoco.mj_kinematics(self.model, self.data)

    def _near(self, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S, G, Z) and (S, G): which arm geoms (centres (S, G, 3)) may come within NEAR_M of
        each zone and of the table top, by their bounding spheres; the others are farther."""
        m = self.model
        radius = m.geom_rbound[self.arm_geoms]
        zones = []
        for _, g in self.zones:
            half = m.geom_size[g]
            gap = np.linalg.norm(np.maximum(np.abs(centers - self.data.geom_xpos[g]) - half, 0),
                                 axis=-1) - radius
            zones.append(gap < NEAR_M)
        return np.stack(zones, axis=-1), centers[..., 2] - radius < NEAR_M

    def _distance(self, arm: int, other: int) -> float:
        return float(mujoco.mj_geomDistance(self.model, self.data, int(arm), int(other), 1.0,
                                            None))

    def check(self, q0: np.ndarray, v0: np.ndarray, q1: np.ndarray, duration: float,
              f0: float, f1: float) -> list[str]:
        """Names of the limits this motion breaks further than the start did."""
        fine = np.linspace(0.0, 1.0, 2001)
        q_fine = _cubic(q0, v0, q1, duration, fine)
        steps = float(np.abs(np.diff(q_fine, axis=0)).sum(axis=0).max())
        n = int(np.clip(np.ceil(steps / RECHECK_STEP_RAD), 50, RECHECK_MAX_SAMPLES))
        s = np.linspace(0.0, 1.0, n + 1)
        q = _cubic(q0, v0, q1, duration, s)
        f = f0 + (3 * s**2 - 2 * s**3) * (f1 - f0)
        self.samples += len(s)
        broken = []
        # Joint positions: breach beyond the margin band, no deeper than at the start.
        breach = np.maximum(np.maximum(self.q_lo - q, q - self.q_hi), 0.0)
        if np.any(breach > breach[0] + 1e-9):
            broken.append("joint_limits")
        dt = duration / n
        qd = np.abs(np.diff(q, axis=0)) / dt
        if np.any(qd > self.qd_max + TOLERANCE_SPEED) or np.any(np.abs(v0) > self.qd_max):
            broken.append("joint_speed")
        tcp = np.empty((len(s), 3))
        centers = np.empty((len(s), len(self.arm_geoms), 3))
        for k in range(len(s)):
            self._pose(q[k], f[k])
            tcp[k] = self.data.site_xpos[self.tcp]
            centers[k] = self.data.geom_xpos[self.arm_geoms]
        near_zone, near_table = self._near(centers)
        # Exact distances where the bounding spheres may be near, and everywhere at the start
        # (a breach counts only beyond the start's); the rest are NEAR_M away at least.
        zone_d = np.full((len(s), len(self.zones)), NEAR_M)
        table_d = np.full(len(s), NEAR_M)
        for k in np.flatnonzero(near_zone.any(axis=(1, 2)) | near_table.any(axis=1)):
            self._pose(q[k], f[k])
            for z, (_, g) in enumerate(self.zones):
                for a in self.arm_geoms[near_zone[k, :, z]]:
                    zone_d[k, z] = min(zone_d[k, z], self._distance(a, g))
            for a in self.arm_geoms[near_table[k]]:
                table_d[k] = min(table_d[k], self._distance(a, self.table))
        self._pose(q[0], f[0])
        zone_d[0] = [min(self._distance(a, g) for a in self.arm_geoms) for _, g in self.zones]
        table_d[0] = min(self._distance(a, self.table) for a in self.arm_geoms)
        outside = np.linalg.norm(np.maximum(0, np.maximum(self.ws_lo - tcp, tcp - self.ws_hi)),
                                 axis=1)
        if np.any(outside > outside[0] + TOLERANCE_M):
            broken.append("workspace")
        if np.any(zone_d < np.minimum(0.0, zone_d[0]) - TOLERANCE_M):
            broken.append("keep_out")
        if np.any(table_d < min(0.0, table_d[0]) - TOLERANCE_M):
            broken.append("table")
        tcp_speed = np.linalg.norm(np.diff(tcp, axis=0), axis=1) / dt
        self.fastest_tcp = max(self.fastest_tcp, float(tcp_speed.max()))
        if np.any(tcp_speed > self.limits.ee_speed_limit_mps + TOLERANCE_SPEED):
            broken.append("ee_speed")
        if zone_d[0].min() >= self.limits.keep_out_margin_m:
            # From outside the margin, how near the arm came: the margin less the sweep error.
            self.closest_zone_m = min(self.closest_zone_m, float(zone_d.min()))
        elif zone_d[0].min() > 0:
            self.started_in_margin += 1
        return broken


def _cubic(q0: np.ndarray, v0: np.ndarray, q1: np.ndarray, duration: float,
           s: np.ndarray) -> np.ndarray:
    """The controller's cubic Hermite (to rest), written out here rather than imported: the
    re-check must not share the shield's code."""
    s = s[:, None]
    return ((2 * s**3 - 3 * s**2 + 1) * q0 + (s**3 - 2 * s**2 + s) * duration * v0
            + (3 * s**2 - 2 * s**3) * q1)


def _cubic_velocity(q0: np.ndarray, v0: np.ndarray, q1: np.ndarray, duration: float,
                    s: float) -> np.ndarray:
    return ((6 * s**2 - 6 * s) * q0 + (3 * s**2 - 4 * s + 1) * duration * v0
            + (6 * s - 6 * s**2) * q1) / duration


# ---------------------------------------------------------------------------- the run
@dataclass
class Figures:
    """What the run counts."""

    proposals: int = 0
    executed: int = 0  # a motion was commanded
    executed_as_proposed: int = 0
    stops: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # by the first failing check
    backups: Counter[str] = field(default_factory=Counter)  # "home executed", "home refused"
    malformed: Counter[str] = field(default_factory=Counter)  # what was injected
    violations: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    bad_input_executed: int = 0  # motions commanded for malformed or stale input (goal 0)
    decision_ms: list[float] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)  # rollouts by start state
    recheck: dict[str, float] = field(default_factory=dict)  # the re-check's own figures


class Scenario:
    """Random arm states and proposals, realistic and adversarial."""

    def __init__(self, cfg: dict[str, Any], shield: Shield, rng: np.random.Generator) -> None:
        self.rng = rng
        self.shield = shield
        self.limits = shield.limits
        self.home = np.asarray(cfg["sim"]["home_joint_positions"], float)
        self.tool_down = kin.tcp_pose(self.home)[1]
        self.step = float(cfg["actions"]["step_m"])
        self.period = 1.0 / float(cfg["sim"]["control_hz"])
        self.n_actions = len(shield.actions)

    def start(self) -> tuple[str, np.ndarray, np.ndarray, float]:
        """(kind, q, qd, finger) of a rollout's first state."""
        r, rng = self.rng.random(), self.rng
        finger = float(rng.choice([0.0, 0.04, rng.uniform(0, 0.04)]))
        if r < 0.35:
            kind, q = "realistic", self._ik(self._point_in_workspace())
        elif r < 0.6:
            kind, q = "beside a hazard", self._ik(self._point_near_hazard())
        elif r < 0.75:
            kind = "random joints"
            q = rng.uniform(kin.JOINT_LOWER, kin.JOINT_UPPER)
        elif r < 0.85:
            kind, q = "near a joint limit", self._ik(self._point_in_workspace())
            j = rng.integers(7)
            edge = kin.JOINT_LOWER[j] if rng.random() < 0.5 else kin.JOINT_UPPER[j]
            q[j] = edge + np.sign(self.home[j] - edge) * rng.uniform(0, 0.1)
        else:
            kind, q = "home, perturbed", self.home + rng.normal(0, 0.3, 7)
        q = np.clip(q, kin.JOINT_LOWER, kin.JOINT_UPPER)
        u = rng.random()
        if u < 0.5:
            qd = rng.normal(0, 0.02, 7)
        elif u < 0.85:
            qd = rng.normal(0, 0.2, 7)  # in the middle of a motion
        else:
            qd = rng.uniform(-1, 1, 7) * kin.JOINT_VELOCITY_LIMIT  # adversarial: fast
        return kind, q, qd, finger

    def _point_in_workspace(self) -> np.ndarray:
        ws = self.limits.workspace
        return self.rng.uniform(ws.min - 0.02, ws.max + 0.02)

    def _point_near_hazard(self) -> np.ndarray:
        """Just outside a keep-out zone (within the margin and a step), or just inside a
        workspace face."""
        rng, lim = self.rng, self.limits
        boxes = [*lim.keep_out_zones, lim.workspace]
        box = boxes[rng.integers(len(boxes))]
        axis, side = rng.integers(3), rng.choice([-1.0, 1.0])
        point = box.center + rng.uniform(-1, 1, 3) * box.half_extents
        reach = lim.keep_out_margin_m + self.step
        offset = -rng.uniform(0, self.step) if box is lim.workspace else rng.uniform(0, reach)
        point[axis] = box.center[axis] + side * (box.half_extents[axis] + offset)
        point[2] = max(point[2], lim.table_clearance_m + 0.005)
        return point

    def _ik(self, point: np.ndarray) -> np.ndarray:
        return kin.solve_ik(point, self.tool_down, self.home, q_rest=self.home).q

    def proposal(self, q: np.ndarray, qd: np.ndarray, finger: float) -> tuple[
            Any, Any, ArmState, Ages, str]:
        """(action index, C row, state as the shield sees it, ages, what was made malformed)."""
        rng = self.rng
        index: Any = int(rng.integers(self.n_actions))
        row: Any = rng.uniform(0, 0.6, self.n_actions)
        position: Any = q.copy()
        velocity: Any = qd.copy()
        ages = Ages(*rng.uniform(0, 0.2, 2), rng.uniform(-0.3, 0.05), rng.uniform(0, 0.1))
        bad = ""
        if rng.random() < 0.25:
            bad = str(rng.choice([
                "unknown id", "nan id", "C nan", "C inf", "C short", "C above 1",
                "q nan", "q inf", "q short", "q beyond limits", "qd nan", "qd inf", "qd short",
                "qd unknown", "finger nan", "obs future", "proposal future", "obs nan",
                "proposal nan", "stale", "joint state future", "joint state lag nan"]))
            if bad == "unknown id":
                index = int(rng.choice([-1, self.n_actions, 2**31]))
            elif bad == "nan id":
                index = math.nan
            elif bad.startswith("C "):
                row = {"C nan": np.where(np.arange(self.n_actions) == index, np.nan, row),
                       "C inf": np.full(self.n_actions, np.inf), "C short": row[:3],
                       "C above 1": row + 1.0}[bad]
            elif bad.startswith("q "):
                position = {"q nan": np.where(np.arange(7) == rng.integers(7), np.nan, q),
                            "q inf": np.full(7, -np.inf), "q short": q[:6],
                            "q beyond limits": np.where(np.arange(7) == 3,
                                                        kin.JOINT_UPPER + 0.5, q)}[bad]
            elif bad.startswith("qd "):
                velocity = {"qd nan": np.full(7, np.nan), "qd inf": np.full(7, np.inf),
                            "qd short": qd[:5], "qd unknown": None}[bad]
            elif bad == "finger nan":
                finger = math.nan
            else:
                ages = {"obs future": Ages(-rng.uniform(0.06, 5.0), 0.0),
                        "proposal future": Ages(0.0, -rng.uniform(0.06, 5.0)),
                        "obs nan": Ages(math.nan, 0.0), "proposal nan": Ages(0.0, math.nan),
                        "stale": Ages(rng.uniform(0.51, 100.0), 0.0),
                        "joint state future": Ages(0.0, 0.0, 0.0, -rng.uniform(0.06, 5.0)),
                        "joint state lag nan": Ages(0.0, 0.0, math.nan)}[bad]
        if not bad and rng.random() < 0.05:  # the learned check refuses this one
            row = np.where(np.arange(self.n_actions) == rng.integers(self.n_actions), 0.9, row)
        return index, row, ArmState(position, velocity, finger), ages, bad

    def after(self, q: np.ndarray, qd: np.ndarray, plan: PlannedMotion | None) -> tuple[
            np.ndarray, np.ndarray]:
        """The true arm state one control period later: along the executed cubic, or braked to
        a halt for a stop (with a little tracking noise)."""
        noise = self.rng.normal(0, 0.002, 7)
        if plan is None:
            return np.clip(q + noise, kin.JOINT_LOWER, kin.JOINT_UPPER), noise
        s = min(1.0, self.period / plan.duration_s)
        q_next = _cubic(q, qd, plan.arm_target, plan.duration_s, np.array([s]))[0]
        qd_next = _cubic_velocity(q, qd, plan.arm_target, plan.duration_s, s)
        return (np.clip(q_next + noise, kin.JOINT_LOWER, kin.JOINT_UPPER),
                qd_next + self.rng.normal(0, 0.01, 7))


def run(n_proposals: int, seed: int = 0, quiet: bool = False) -> Figures:
    """Decide n_proposals proposals and re-check every executed motion."""
    cfg = load_config()
    shield = Shield(cfg)
    recheck = Recheck(cfg)
    rng = np.random.default_rng(seed)
    scenario = Scenario(cfg, shield, rng)
    fig = Figures()
    started = time.monotonic()
    while fig.proposals < n_proposals:
        kind, q, qd, finger = scenario.start()
        fig.states[kind] += 1
        shield.planner.reset()
        for _ in range(ROLLOUT_STEPS):
            if fig.proposals >= n_proposals:
                break
            index, row, state, ages, bad = scenario.proposal(q, qd, finger)
            t0 = time.perf_counter()
            verdict = shield.decide(index, row, state, ages)
            fig.decision_ms.append((time.perf_counter() - t0) * 1e3)
            fig.proposals += 1
            if bad:
                fig.malformed[bad] += 1
            if verdict.intervened or verdict.reason:
                fig.refused[verdict.reason.split(":")[0].split(";")[0]] += 1
            for name, why in verdict.backups:
                fig.backups[f"{name} {'refused' if why else 'executed'}"] += 1
            plan = verdict.plan
            if plan is None:
                fig.stops += 1
            else:
                fig.executed += 1
                fig.executed_as_proposed += int(not verdict.intervened)
                fig.bad_input_executed += int(bool(bad))
                broken = recheck.check(q, qd, plan.arm_target, plan.duration_s,
                                       plan.finger_start, plan.finger_target)
                for name in broken:
                    fig.violations[name] += 1
                if broken and len(fig.examples) < 10:
                    fig.examples.append(
                        f"{kind}: {verdict.executed.name} ({verdict.proposed.name}) breaks "
                        f"{broken}; q={np.round(q, 3).tolist()} qd={np.round(qd, 3).tolist()}")
                finger = plan.finger_target
            q, qd = scenario.after(q, qd, plan)
        if not quiet and fig.proposals % 5000 < ROLLOUT_STEPS:
            rate = fig.proposals / (time.monotonic() - started)
            print(f"  {fig.proposals} proposals, {fig.executed} executed, "
                  f"{sum(fig.violations.values())} violations ({rate:.0f}/s)", flush=True)
    fig.recheck = {
        "motions": fig.executed, "samples": recheck.samples,
        "closest zone approach from outside the margin (mm)": round(
            recheck.closest_zone_m * 1e3, 1),
        "motions starting within a zone's margin": recheck.started_in_margin,
        "fastest TCP (mm/s)": round(recheck.fastest_tcp * 1e3, 1)}
    return fig


def report(fig: Figures, seconds: float) -> str:
    """The figures as text."""
    ms = np.array(fig.decision_ms)
    lines = [
        f"proposals tried: {fig.proposals} in {seconds:.0f} s",
        f"executed motions: {fig.executed} ({fig.executed_as_proposed} as proposed, "
        f"{fig.backups['home executed']} home backups); stops: {fig.stops}",
        "refused, by first failing check: "
        + ", ".join(f"{k} {v}" for k, v in fig.refused.most_common()),
        "backups: " + ", ".join(f"{k} {v}" for k, v in sorted(fig.backups.items())),
        "malformed or stale input injected: " + str(sum(fig.malformed.values()))
        + f" ({len(fig.malformed)} kinds); motions executed from it: {fig.bad_input_executed}",
        "rollouts by start state: " + ", ".join(f"{k} {v}" for k, v in fig.states.items()),
        "re-check: " + ", ".join(f"{k} {v}" for k, v in fig.recheck.items()),
        f"decision time: p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms",
        "violations found by the re-check: " + str(sum(fig.violations.values()))
        + (" (" + ", ".join(f"{k} {v}" for k, v in fig.violations.items()) + ")"
           if fig.violations else ""),
        *fig.examples,
    ]
    return "\n".join(lines)


def main() -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proposals", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.monotonic()
    fig = run(args.proposals, args.seed)
    print(report(fig, time.monotonic() - start))


if __name__ == "__main__":
    main()
