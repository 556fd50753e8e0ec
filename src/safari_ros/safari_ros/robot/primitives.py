"""Discrete primitives -> joint targets, on the Panda's kinematics.

One planner serves the simulator's Gymnasium path and the shield node's ROS path, so that the
motion the shield checks is the motion the arm makes. Moves keep the tool pointing down and step
the TCP goal on a lattice of step_m (repeated moves do not drift); home is a joint-space motion
slow enough to keep the TCP under the speed limit; stop holds the measured pose. Every motion is a
cubic from the measured joint state (velocity included) to rest at the target, the spline a
joint_trajectory_controller follows when the point carries velocities. Which primitive runs is
the shield's decision (safari_ros.safety.shield), made on the plans of this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from safari_ros.config import ActionSpec, safety_limits
from safari_ros.robot import kinematics as kin
from safari_ros.robot.trajectory import Cubic, sample_times

# Points at which `PlannedMotion.predicted` samples a motion for comparison with the arm (tests,
# figures). The shield does not check these samples: it sweeps the motion at the resolution its
# bound needs (safari_ros.safety.motion).
PATH_SAMPLES = 9
MAX_HOME_STRETCHES = 6


@dataclass(frozen=True)
class SampledPath:
    """A motion at equally spaced times: the TCP and the joints (for comparisons, not checks)."""

    tcp_path: np.ndarray  # (S, 3)
    joint_path: np.ndarray  # (S, 7)
    duration_s: float

    def peak_tcp_speed(self) -> float:
        """Largest TCP speed between consecutive samples (m/s): an estimate, not a bound."""
        steps = np.linalg.norm(np.diff(self.tcp_path, axis=0), axis=1)
        return float(np.max(steps)) * (len(self.tcp_path) - 1) / self.duration_s


@dataclass(frozen=True)
class PlannedMotion:
    """Where a primitive sends the arm and the gripper, and over how long."""

    arm_target: np.ndarray  # 7 joint positions (rad)
    finger_target: float  # per-finger opening (m)
    duration_s: float
    ee_start: np.ndarray
    ee_end: np.ndarray  # TCP at arm_target (forward kinematics of what will be commanded)
    ik_converged: bool
    arm_start: np.ndarray  # measured joints the motion starts from
    arm_start_velocity: np.ndarray  # measured joint velocities
    finger_start: float  # the finger opening last commanded (the controller starts from it)

    @property
    def cubic(self) -> Cubic:
        """The joint-space cubic the controller follows: from the measured state (velocity
        included) to rest at the target."""
        return Cubic(self.arm_start, self.arm_start_velocity, self.arm_target, self.duration_s)

    def finger_at(self, s: np.ndarray) -> np.ndarray:
        """Finger opening at fractions s: rest to rest on the same kind of cubic."""
        s = np.clip(np.asarray(s, float), 0.0, 1.0)
        return self.finger_start + (3 * s**2 - 2 * s**3) * (self.finger_target - self.finger_start)

    def predicted(self, samples: int = PATH_SAMPLES) -> SampledPath:
        """The TCP and joint paths at `samples` equal times (to compare with the arm)."""
        path = self.cubic.positions(sample_times(samples))
        tcp = kin.link_frames_batch(path)[:, 9, :3, 3]
        return SampledPath(tcp, path, self.duration_s)


class PrimitivePlanner:
    """Plans the configured primitives for the Panda; holds the TCP goal lattice between calls."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        sim = cfg["sim"]
        self.step_m = float(cfg["actions"]["step_m"])
        self.duration_s = float(cfg["actions"]["duration_s"])
        self.home_q = np.asarray(sim["home_joint_positions"], float)
        self.home_speed = float(sim["home_joint_speed_rad_s"])
        self.home_tcp_speed = float(sim["home_max_tcp_speed_mps"])
        self.gripper_open = float(sim["gripper_open_m"])
        self.limits = safety_limits(cfg)
        self.sweep_resolution_m = float(cfg["safety"]["sweep_resolution_m"])
        self.home_tcp, self.tcp_rot = kin.tcp_pose(self.home_q)
        self._ee_goal: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the goal lattice (after a reset, a stop or an external command)."""
        self._ee_goal = None

    def plan(self, spec: ActionSpec, q_now: np.ndarray, finger_target: float,
             qd_now: np.ndarray | None = None) -> PlannedMotion:
        """The joint targets of one primitive, starting from the measured arm joints q_now and
        velocities qd_now (None: at rest; the shield never plans from an unknown velocity) and
        from the finger opening last commanded."""
        q_now = np.asarray(q_now, float)[:7]
        qd = np.zeros(7) if qd_now is None else np.asarray(qd_now, float)[:7]
        ee_now = kin.tcp_pose(q_now)[0]
        duration = self.duration_s
        arm, fingers, converged = q_now.copy(), float(finger_target), True
        if spec.name == "stop":
            self.reset()
        elif spec.name == "home":
            arm = self.home_q.copy()
            self._ee_goal = self.home_tcp.copy()
            # A rest-to-rest cubic peaks at 1.5x its mean speed.
            duration = max(duration,
                           1.5 * float(np.max(np.abs(self.home_q - q_now))) / self.home_speed)
            duration = self._slow_to_tcp_speed(q_now, qd, duration)
        elif spec.gripper is not None:
            fingers = self.gripper_open if spec.gripper == "open" else 0.0
        else:
            arm, converged = self._ik_step(ee_now, q_now, np.asarray(spec.delta) * self.step_m)
        return PlannedMotion(arm, fingers, duration, ee_now, kin.tcp_pose(arm)[0], converged,
                             q_now, qd, float(finger_target))

    def _slow_to_tcp_speed(self, q_now: np.ndarray, qd: np.ndarray, duration: float) -> float:
        """Stretch home's duration until the bound on its TCP speed (the one the shield checks,
        kin.tcp_speed_bound) is home_max_tcp_speed_mps at most: a long joint-space motion can
        swing the TCP faster than its joints suggest."""
        for _ in range(MAX_HOME_STRETCHES):  # the start velocity makes speed not 1/duration
            cubic = Cubic(q_now, qd, self.home_q, duration)
            s = kin.sweep_fractions(cubic, 0.0, self.sweep_resolution_m)
            peak = kin.tcp_speed_bound(cubic, s)
            if peak <= self.home_tcp_speed:
                break
            # A little over the ratio: the bound's slack shrinks more slowly than 1/duration.
            duration *= 1.05 * peak / self.home_tcp_speed
        return duration

    def _ik_step(self, ee_now: np.ndarray, q_now: np.ndarray,
                 displacement: np.ndarray) -> tuple[np.ndarray, bool]:
        # Goals live on the lattice home + k * step_m; when the last motion did not arrive
        # (blocked, preempted, external command) the goal restarts from the measured TCP.
        if self._ee_goal is None or np.max(np.abs(self._ee_goal - ee_now)) > self.step_m / 2:
            self._ee_goal = ee_now
        ws = self.limits.workspace
        goal = np.clip(self._ee_goal + displacement, ws.min - self.step_m, ws.max + self.step_m)
        res = kin.solve_ik(goal, self.tcp_rot, q_now, q_rest=self.home_q,
                           limit_margin=2 * self.limits.joint_limit_margin_rad)
        self._ee_goal = goal if res.converged else kin.tcp_pose(res.q)[0]
        return res.q, res.converged
