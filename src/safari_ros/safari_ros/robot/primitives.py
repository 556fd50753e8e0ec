"""Discrete primitives -> joint targets, on the Panda's kinematics.

One planner serves the simulator's Gymnasium path and the shield node's ROS path, so that the
motion the shield checks is the motion the arm makes. Moves keep the tool pointing down and step
the TCP goal on a lattice of step_m (repeated moves do not drift); home is a joint-space motion
slow enough to keep the TCP under the speed limit; stop holds the measured pose. Every motion is a
cubic from the measured joint state (velocity included) to rest at the target, the spline a
joint_trajectory_controller follows when the point carries velocities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from safari_ros.config import ActionSpec, safety_limits
from safari_ros.robot import kinematics as kin
from safari_ros.robot.trajectory import cubic_hermite, sample_times
from safari_ros.safety.shield import PredictedMotion, Shield, ShieldVerdict

# Points at which a motion's TCP path and arm links are predicted (the shield's view).
PATH_SAMPLES = 9


@dataclass(frozen=True)
class PlannedMotion:
    """Where a primitive sends the arm and the gripper, and over how long."""

    arm_target: np.ndarray  # 7 joint positions (rad)
    finger_target: float  # per-finger opening (m)
    duration_s: float
    ee_start: np.ndarray
    ee_end: np.ndarray  # TCP at arm_target (forward kinematics of what will be commanded)
    ik_converged: bool
    arm_start: np.ndarray | None = None  # measured joints the motion starts from
    arm_start_velocity: np.ndarray | None = None  # measured joint velocities (None: at rest)

    def joint_path(self, samples: int = PATH_SAMPLES) -> np.ndarray:
        """(samples, 7) joint positions at equal times along the motion the controller makes."""
        start = self.arm_target if self.arm_start is None else self.arm_start
        v0 = np.zeros(7) if self.arm_start_velocity is None else self.arm_start_velocity
        return cubic_hermite(start, v0, self.arm_target, np.zeros(7), self.duration_s,
                             sample_times(samples))

    def predicted(self, samples: int = PATH_SAMPLES) -> PredictedMotion:
        """The shield's view: the TCP path and the arm's link origins (elbow to hand) along the
        joint-space path, and the joint target (None if IK failed)."""
        path = self.joint_path(samples)
        frames = [kin.link_frames(q) for q in path]
        tcp = np.array([fs[-1][:3, 3] for fs in frames])  # the last frame is the TCP
        # Links 3..7, flange and hand: the ones that reach over the table.
        links = np.array([f[:3, 3] for fs in frames for f in fs[2:-1]])
        return PredictedMotion(self.ee_start, self.ee_end, self.duration_s,
                               self.arm_target if self.ik_converged else None, links, tcp, path)


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
        self.home_tcp, self.tcp_rot = kin.tcp_pose(self.home_q)
        self._ee_goal: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the goal lattice (after a reset, a stop or an external command)."""
        self._ee_goal = None

    def plan(self, spec: ActionSpec, q_now: np.ndarray, finger_target: float,
             qd_now: np.ndarray | None = None) -> PlannedMotion:
        """The joint targets of one primitive, starting from the measured arm joints q_now and
        velocities qd_now (None: at rest)."""
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
                             q_now, qd)

    def _slow_to_tcp_speed(self, q_now: np.ndarray, qd: np.ndarray, duration: float) -> float:
        """Stretch home's duration until its predicted peak TCP speed is home_max_tcp_speed_mps
        at most (a long joint-space motion can swing the TCP faster than its joints suggest)."""
        for _ in range(4):  # the start velocity makes speed not exactly 1/duration: iterate
            motion = PlannedMotion(self.home_q, 0.0, duration, kin.tcp_pose(q_now)[0],
                                   self.home_tcp, True, q_now, qd)
            peak = motion.predicted().peak_tcp_speed()
            if peak <= self.home_tcp_speed * 1.001:
                break
            duration *= peak / self.home_tcp_speed
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


def shielded_plan(
    shield: Shield,
    planner: PrimitivePlanner,
    index: int,
    constraint: Any,
    q_now: np.ndarray,
    qd_now: np.ndarray | None,
    finger_target: float,
    observation_age_s: float = 0.0,
    proposal_age_s: float = 0.0,
    joint_state_lag_s: float = 0.0,
) -> tuple[ShieldVerdict, PlannedMotion | None]:
    """The shield's verdict on proposal `index` and the motion to command; None means stop.

    The proposal is planned from the measured state and checked on its predicted motion; a
    replaced proposal's backup is planned in its place. An unknown action or a non-finite joint
    state gets no plan, so the shield fails closed. shield_node and the evaluation harness both
    act through this function."""
    plan = None
    if 0 <= index < len(shield.actions) and np.all(np.isfinite(q_now)):
        plan = planner.plan(shield.actions[index], q_now, finger_target, qd_now)
    verdict = shield.decide(index, constraint, plan.predicted() if plan else None,
                            observation_age_s, proposal_age_s, joint_state_lag_s)
    if verdict.executed.name == "stop":
        planner.reset()
        return verdict, None
    if verdict.intervened or plan is None:
        plan = planner.plan(verdict.executed, q_now, finger_target, qd_now)
    return verdict, plan
