"""The safety shield's decision rule, as pure functions of the proposal and the robot state.

Every proposal is checked on its *predicted motion* (where the end-effector goes, how fast, which
joint targets it needs) against the hard limits of config['safety'], then against the learned
constraint predictor C(s,a) < tau_safe. Anything that fails, or that could not be checked, is
replaced by a backup action (stop or home, chosen per failed check in config). The shield fails
closed: a check that cannot run counts as a violation, never as a pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from safari_ros.config import ActionSpec, Box, SafetyLimits
from safari_ros.core.scapo import shield_action

# Order of checks; the first failing one names the reason and picks the backup action.
CHECKS = ("input_valid", "watchdog", "workspace", "keep_out", "ee_speed", "joint_limits", "learned")
# The checks of configured physical limits (not the learned check, the watchdog or bad input).
HARD_LIMITS = ("workspace", "keep_out", "ee_speed", "joint_limits")


class Check(IntEnum):
    """Outcome of one check (matches safari_msgs/ShieldDecision's constants)."""

    OK = 0
    VIOLATION = 1
    NOT_CHECKED = 2


@dataclass(frozen=True)
class PredictedMotion:
    """What executing a proposal would do, as predicted from the kinematics."""

    ee_start: np.ndarray  # end-effector position now (base frame, m)
    ee_end: np.ndarray  # end-effector position at the end of the primitive
    duration_s: float  # time the controller is given for the motion
    joint_target: np.ndarray | None  # joint positions at the end (rad); None if IK failed
    link_points: np.ndarray | None = None  # (N, 3) arm link origins along the joint path
    # (S, 3) TCP positions at S equal time steps of the joint-space path, ends included; None:
    # the straight line from ee_start to ee_end at constant speed.
    tcp_path: np.ndarray | None = None
    joint_path: np.ndarray | None = None  # (S, n) joint positions at the same times

    def peak_joint_speed(self) -> np.ndarray | None:
        """Per joint, the largest speed between consecutive samples (rad/s); None: unknown."""
        if self.joint_path is None or len(self.joint_path) < 2:
            return None
        if self.duration_s <= 0:
            return np.full(self.joint_path.shape[1], math.inf)
        dt = self.duration_s / (len(self.joint_path) - 1)
        return np.max(np.abs(np.diff(self.joint_path, axis=0)), axis=0) / dt

    def path(self) -> np.ndarray:
        """(S, 3) TCP positions along the motion at equal time steps."""
        if self.tcp_path is not None:
            return self.tcp_path
        return np.stack([self.ee_start, self.ee_end])

    def peak_tcp_speed(self) -> float:
        """Largest TCP speed between consecutive path samples (m/s); inf for a zero duration."""
        path = self.path()
        if self.duration_s <= 0:
            return math.inf
        steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
        return float(np.max(steps)) * (len(path) - 1) / self.duration_s


@dataclass
class ShieldVerdict:
    """The decision for one proposal."""

    proposed: ActionSpec
    executed: ActionSpec
    codes: dict[str, Check] = field(default_factory=dict)
    reason: str = ""

    @property
    def intervened(self) -> bool:
        """True when the shield replaced the proposed action."""
        return self.executed.index != self.proposed.index

    @property
    def hard_limit_refusal(self) -> bool:
        """True when the proposal was replaced because its motion breaks a hard limit."""
        return self.intervened and violates_hard_limit(self.codes)


def violates_hard_limit(codes: Mapping[str, int]) -> bool:
    """Whether any hard-limit check (HARD_LIMITS) of a decision's codes is a violation."""
    return any(codes.get(c) == Check.VIOLATION for c in HARD_LIMITS)


def _finite(*values: object) -> bool:
    for v in values:
        if v is None:
            continue
        if not np.all(np.isfinite(np.asarray(v, dtype=float))):
            return False
    return True


class Shield:
    """Hard limits + learned check + watchdog, over the configured action set."""

    def __init__(
        self,
        limits: SafetyLimits,
        actions: Sequence[ActionSpec],
        joint_lower: Sequence[float],
        joint_upper: Sequence[float],
        joint_velocity_limit: Sequence[float],
    ) -> None:
        """joint_* are the arm's position (rad) and velocity (rad/s) limits; a motion may use
        limits.joint_speed_fraction of the velocity limits."""
        self.limits = limits
        self.actions = list(actions)
        self.by_name = {a.name: a for a in self.actions}
        self.joint_lower = np.asarray(joint_lower, float)
        self.joint_upper = np.asarray(joint_upper, float)
        self.joint_speed_limit = limits.joint_speed_fraction * np.asarray(joint_velocity_limit,
                                                                          float)
        for reason in CHECKS:
            backup = limits.backup_for_reason.get(reason, "stop")
            if backup not in self.by_name or not self.by_name[backup].backup:
                raise ValueError(f"backup_for_reason.{reason} = {backup!r} is not a backup action")
        self.stop = self.by_name["stop"]

    def backup_for(self, reason: str) -> ActionSpec:
        """The configured backup action for a failed check."""
        return self.by_name[self.limits.backup_for_reason.get(reason, "stop")]

    def zones_hit(self, motion: PredictedMotion) -> list[str]:
        """Keep-out zones (grown by the hand's clearance) that the TCP path or an arm link point
        would enter. Moving out of a zone the TCP is already in is allowed: refusing it would
        hold the arm inside, costing at every step."""
        margin = self.limits.keep_out_margin_m
        path = motion.path()
        if float(np.max(np.linalg.norm(path - path[0], axis=1))) == 0.0:
            return []
        links = motion.link_points
        hit = []
        for z in self.limits.keep_out_zones:
            if z.signed_distance(path[0], margin) < 0 and self._leaves(z, path, margin):
                continue
            if any(z.segment_intersects(a, b, margin) for a, b in itertools.pairwise(path)) or (
                links is not None and any(z.contains(p, margin) for p in links)
            ):
                hit.append(z.name)
        return hit

    @staticmethod
    def _leaves(zone: Box, path: np.ndarray, margin: float) -> bool:
        """Whether a path that starts inside the grown zone only moves away from it: the
        distance grows over every segment's first millimetre (distance along a straight segment
        is convex, so then it grows all along it)."""
        for a, b in itertools.pairwise(path):
            length = float(np.linalg.norm(b - a))
            if length == 0.0:
                continue
            first_mm = a + (b - a) * min(1.0, 1e-3 / length)
            if zone.signed_distance(first_mm, margin) <= zone.signed_distance(a, margin) + 1e-7:
                return False
        return True

    def _outside(self, p: np.ndarray) -> float:
        """How far (m) a TCP position is outside the workspace box or below the table clearance;
        0 inside."""
        ws = self.limits.workspace
        box = np.linalg.norm(np.maximum(0.0, np.maximum(ws.min - p, p - ws.max)))
        return float(box + max(0.0, self.limits.table_clearance_m - p[2]))

    def _within_workspace(self, path: np.ndarray) -> bool:
        """Every sample of the path inside the box (convex: the segments between them too), or,
        for an arm already outside (pushed there by contact, say), a path that only comes
        back: refusing it would hold the arm out there, costing at every step."""
        outside = np.array([self._outside(p) for p in path])
        if not outside.any():
            return True
        return bool(outside[0] > 0 and np.all(np.diff(outside) <= 1e-9)
                    and outside[-1] < outside[0])

    def check_motion(self, motion: PredictedMotion) -> dict[str, Check]:
        """Hard-limit checks on a predicted motion (workspace, keep-out, speed, joint limits)."""
        lim = self.limits
        codes: dict[str, Check] = {}
        path = motion.path()
        codes["workspace"] = Check.OK if self._within_workspace(path) else Check.VIOLATION
        codes["keep_out"] = Check.VIOLATION if self.zones_hit(motion) else Check.OK
        speed = motion.peak_tcp_speed()
        codes["ee_speed"] = Check.OK if speed <= lim.ee_speed_limit_mps else Check.VIOLATION
        if motion.joint_target is None:
            codes["joint_limits"] = Check.NOT_CHECKED
        else:
            margin = lim.joint_limit_margin_rad
            inside = np.all(motion.joint_target >= self.joint_lower + margin) and np.all(
                motion.joint_target <= self.joint_upper - margin
            )
            speeds = motion.peak_joint_speed()
            slow = speeds is None or bool(np.all(speeds <= self.joint_speed_limit[:len(speeds)]))
            codes["joint_limits"] = Check.OK if inside and slow else Check.VIOLATION
        return codes

    def decide(
        self,
        action_index: int,
        constraint: Sequence[float],
        motion: PredictedMotion | None,
        observation_age_s: float,
        proposal_age_s: float,
        joint_state_lag_s: float = 0.0,
    ) -> ShieldVerdict:
        """Decide what to execute for a proposal; never raises on bad numbers (fails closed).

        constraint is C(s, a) for every action of the set (ActionProposal's row).
        joint_state_lag_s: how much older the joint state the motion was planned from is than
        the observation the proposal answers (inf: no joint state); over
        limits.joint_state_max_lag_s is a watchdog failure.
        """
        if not 0 <= action_index < len(self.actions):
            verdict = ShieldVerdict(self.stop, self.stop, {c: Check.NOT_CHECKED for c in CHECKS})
            verdict.codes["input_valid"] = Check.VIOLATION
            verdict.reason = f"input_valid:unknown action index {action_index}"
            return verdict
        proposed = self.actions[action_index]
        codes = {c: Check.NOT_CHECKED for c in CHECKS}
        row = np.asarray(constraint, dtype=float).reshape(-1)
        valid = (
            motion is not None
            and row.size == len(self.actions)
            and _finite(row, motion.ee_start, motion.ee_end, motion.joint_target,
                        motion.tcp_path, motion.link_points, motion.joint_path)
        )
        codes["input_valid"] = Check.OK if valid else Check.VIOLATION
        fresh = max(observation_age_s, proposal_age_s) <= self.limits.watchdog_s
        current = joint_state_lag_s <= self.limits.joint_state_max_lag_s  # False for NaN too
        codes["watchdog"] = Check.OK if fresh and current else Check.VIOLATION
        if valid and motion is not None:
            codes.update(self.check_motion(motion))
            learned = shield_action(action_index, row, self.limits.tau_safe, self.stop.index)
            codes["learned"] = Check.OK if learned.action == action_index else Check.VIOLATION
        if proposed.name == "stop" and codes["input_valid"] == Check.OK:
            # Holding still is the safe state itself; only malformed input overrides it.
            return ShieldVerdict(proposed, proposed, codes, "")
        failed = [c for c in CHECKS if codes[c] != Check.OK]
        if not failed:
            return ShieldVerdict(proposed, proposed, codes, "")
        first = failed[0]
        detail = ""
        if first == "keep_out" and motion is not None:
            detail = ":" + ",".join(self.zones_hit(motion))
        elif first == "watchdog" and fresh:
            detail = f":joint_state {joint_state_lag_s:.3f} s older than the observation"
        backup = self.backup_for(first)
        if backup.index == proposed.index:
            # The backup itself failed its checks (e.g. home through a limit): hold still.
            backup = self.stop
        reason = ";".join([first + detail, *failed[1:]])
        return ShieldVerdict(proposed, backup, codes, reason)
