"""The hard-limit checks of one planned motion: the arm's volumes along the cubic the controller
follows, against the keep-out zones, the table and (for the TCP) the workspace, plus joint limits
and peak speeds.

What is exact and what is bounded:
- joint positions and speeds: exact extremes of the cubic (robot.trajectory.Cubic), no sampling;
- the TCP's speed: kin.tcp_speed_bound, exact at samples plus a bound on its growth in between;
- the volumes (robot.kinematics: LINK_CAPSULES, the hand's and the fingers' boxes, the shapes the
  simulator collides): checked at fractions s_k spaced so that no point of the arm moves more than
  `sweep_resolution_m` between two of them (kin.sweep_fractions). Between samples k and k+1 every
  point moves at most L_k (kin.interval_travel times kin.reach_bounds; the fingers add their own
  travel), and clearance is 1-Lipschitz in the points, so at any time in the interval
      clearance(t) >= max(c_k - l, c_k+1 - (L_k - l)) >= (c_k + c_k+1 - L_k) / 2.
  That lower bound, not the samples, is what must stay clear of the hard limit: the error between
  samples is at most L_k / 2 <= sweep_resolution_m / 2 (5 mm by default), well under the 50 mm
  keep-out margin, and for the workspace (no margin) it is part of the check itself.

The rule per limit, with clearance c measured to the limit itself (the zone, the table top, the
workspace face) and a margin mu (keep_out_margin_m, table_clearance_m, 0):
- at every sample c_k >= min(mu, c_0): outside the margin band the motion stays out of it; an arm
  already inside the band (after tracking lag, or pushed there) may move, but no closer;
- on every interval the lower bound >= min(0, c_0): the limit itself is never crossed, and an arm
  already across it would have to be proven not to go deeper, which a motion that starts at rest
  on the breach cannot be (stop is what remains).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from safari_ros.config import Box, SafetyLimits
from safari_ros.robot import kinematics as kin
from safari_ros.robot.primitives import PlannedMotion
from safari_ros.safety import geometry as geo

ROUNDING_M = 1e-9  # float rounding of positions recomputed along a path (a nanometre)
# The checks of configured physical limits (not the learned check, the watchdog or bad input).
HARD_LIMITS = ("workspace", "keep_out", "ee_speed", "joint_limits")


class Check(IntEnum):
    """Outcome of one check (matches safari_msgs/ShieldDecision's constants)."""

    OK = 0
    VIOLATION = 1
    NOT_CHECKED = 2


@dataclass
class MotionReport:
    """The hard-limit codes of one motion, why each failed, and the figures behind them."""

    codes: dict[str, Check] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    samples: int = 0  # fractions of the motion at which the volumes were placed
    error_bound_m: float = 0.0  # largest possible distance of any arm point from its samples
    tcp_speed_bound: float = 0.0  # m/s
    joint_speed_peak: np.ndarray | None = None  # rad/s, exact

    def fail(self, check: str, detail: str) -> None:
        """Record a violation of `check`, keeping the first detail."""
        self.codes[check] = Check.VIOLATION
        self.details.setdefault(check, detail)


def _holds(c: np.ndarray, lower: np.ndarray, margin: float) -> bool:
    """The rule of the module docstring for samples c (S,) and interval bounds lower (S-1,).
    "Not closer than at the start" allows ROUNDING_M: an arm at rest recomputed along a still
    cubic differs from its start by float rounding, not by motion."""
    start = float(c[0])
    return bool(np.all(c >= min(margin, start - ROUNDING_M))
                and np.all(lower >= min(0.0, start - ROUNDING_M)))


def _interval_bound(c: np.ndarray, travel: np.ndarray) -> np.ndarray:
    """(S-1, ...) lower bounds of a clearance between samples, c (S, ...), travel (S-1, ...)."""
    return 0.5 * (c[:-1] + c[1:] - travel)


class MotionChecker:
    """Hard limits (workspace and table, keep-out zones, TCP and joint speeds, joint limits) of
    planned motions, with the arm's volumes swept along the controller's cubic."""

    def __init__(self, limits: SafetyLimits, sweep_resolution_m: float) -> None:
        if not 0 < sweep_resolution_m < 2 * limits.keep_out_margin_m:
            # Between samples the arm may be resolution / 2 closer than seen: more than the
            # margin and the margin would no longer be what keeps the arm out.
            raise ValueError("safety.sweep_resolution_m must be > 0 and < 2 keep_out_margin_m")
        self.limits = limits
        self.resolution = sweep_resolution_m
        ws = limits.workspace
        # The TCP's box: the workspace, its floor raised to the table clearance where that is
        # higher (the simulator counts a TCP under the clearance as hitting the table).
        self.tcp_lo = ws.min.copy()
        self.tcp_lo[2] = max(self.tcp_lo[2], limits.table_clearance_m)
        self.tcp_hi = ws.max.copy()
        self.joint_lower = kin.JOINT_LOWER + limits.joint_limit_margin_rad
        self.joint_upper = kin.JOINT_UPPER - limits.joint_limit_margin_rad
        self.joint_speed_limit = limits.joint_speed_fraction * kin.JOINT_VELOCITY_LIMIT

    def check(self, plan: PlannedMotion) -> MotionReport:
        """Codes for HARD_LIMITS of one motion (VIOLATION with a detail where it fails)."""
        report = MotionReport(codes=dict.fromkeys(HARD_LIMITS, Check.OK))
        cubic = plan.cubic
        numbers = [plan.duration_s, plan.finger_start, plan.finger_target, *cubic.p0, *cubic.v0,
                   *cubic.p1]
        if not (np.all(np.isfinite(numbers)) and plan.duration_s > 0
                and np.all(np.isfinite(cubic.peak_speed()))):
            # Comparisons with NaN are all False: a check must not run on it and "pass".
            for name in HARD_LIMITS:
                report.codes[name] = Check.NOT_CHECKED
                report.details[name] = "non-finite motion"
            return report
        self._check_joints(plan, report)
        finger_change = plan.finger_target - plan.finger_start
        s = kin.sweep_fractions(cubic, finger_change, self.resolution)
        report.samples = len(s)
        q = cubic.positions(s)
        frames = kin.link_frames_batch(q)
        volumes = kin.arm_volumes(frames, plan.finger_at(s))
        joint_travel = kin.interval_travel(cubic, s)
        finger_travel = np.abs(np.diff(plan.finger_at(s)))
        capsule_travel = joint_travel @ kin.REACH_CAPSULES.T  # (S-1, K)
        box_travel = joint_travel @ kin.REACH_BOXES.T  # (S-1, 3): hand, finger, finger
        box_travel[:, 1:] += finger_travel[:, None]
        tcp_travel = joint_travel @ kin.REACH_TCP
        report.error_bound_m = 0.5 * float(max(capsule_travel.max(), box_travel.max()))
        self._check_workspace(frames[:, 9, :3, 3], tcp_travel, volumes, capsule_travel,
                              box_travel, report)
        self._check_zones(volumes, capsule_travel, box_travel, report)
        report.tcp_speed_bound = kin.tcp_speed_bound(cubic, s, frames)
        if not report.tcp_speed_bound <= self.limits.ee_speed_limit_mps:
            report.fail("ee_speed", f"TCP up to {report.tcp_speed_bound:.3f} m/s")
        return report

    def _check_joints(self, plan: PlannedMotion, report: MotionReport) -> None:
        """Exact: the cubic's position extremes inside the margin band (or, for a joint already
        past it, never further out) and its peak speeds under the allowed share."""
        cubic = plan.cubic
        low, high = cubic.position_range()
        start = cubic.p0
        out = ~((low >= np.minimum(self.joint_lower, start))
                & (high <= np.maximum(self.joint_upper, start)))
        if out.any():
            j = int(np.argmax(out))
            report.fail("joint_limits", f"joint {j + 1} reaches [{low[j]:.3f}, {high[j]:.3f}]")
        peak = cubic.peak_speed()
        report.joint_speed_peak = peak
        fast = ~(peak <= self.joint_speed_limit)
        if fast.any():
            j = int(np.argmax(peak / self.joint_speed_limit))
            report.fail("joint_limits", f"joint {j + 1} at {peak[j]:.2f} rad/s")

    def _check_workspace(self, tcp: np.ndarray, tcp_travel: np.ndarray, volumes: kin.ArmVolumes,
                         capsule_travel: np.ndarray, box_travel: np.ndarray,
                         report: MotionReport) -> None:
        """The TCP inside the workspace box; every volume above the table top, by its margin."""
        c = geo.inside_clearance(tcp, self.tcp_lo, self.tcp_hi)
        if not _holds(c, _interval_bound(c, tcp_travel), 0.0):
            report.fail("workspace", f"tcp:{float(c.min()):+.4f}")
        capsule_z = np.minimum(volumes.seg_a[..., 2], volumes.seg_b[..., 2]) - volumes.radius
        box_z = geo.box_lowest_z(volumes.box_center, volumes.box_rot, volumes.box_half)
        lower = np.minimum(_interval_bound(capsule_z, capsule_travel).min(axis=1),
                           _interval_bound(box_z, box_travel).min(axis=1))
        c = np.minimum(capsule_z.min(axis=1), box_z.min(axis=1))
        if not _holds(c, lower, self.limits.table_clearance_m):
            report.fail("workspace", f"table:{float(c.min()):+.4f}")

    def _check_zones(self, volumes: kin.ArmVolumes, capsule_travel: np.ndarray,
                     box_travel: np.ndarray, report: MotionReport) -> None:
        margin = self.limits.keep_out_margin_m
        hit = []
        for zone in self.limits.keep_out_zones:
            caps = self._capsule_clearance(volumes, zone, margin)
            boxes = self._box_clearance(volumes, zone, margin)
            lower = np.minimum(_interval_bound(caps, capsule_travel).min(axis=1),
                               _interval_bound(boxes, box_travel).min(axis=1))
            if not _holds(np.minimum(caps.min(axis=1), boxes.min(axis=1)), lower, margin):
                hit.append(zone.name)
        if hit:
            report.fail("keep_out", ",".join(hit))

    @staticmethod
    def _capsule_clearance(volumes: kin.ArmVolumes, zone: Box, margin: float) -> np.ndarray:
        """(S, K) capsule clearances to a zone: exact (to 1e-9 m) where they may matter, else the
        bounding-sphere bound, which is already at least the margin (enough for the rule)."""
        a, b, r = volumes.seg_a, volumes.seg_b, volumes.radius
        half_length = 0.5 * np.linalg.norm(b - a, axis=-1)
        c = geo.box_signed_distance(0.5 * (a + b), zone.center, zone.half_extents) \
            - half_length - r
        near = c < margin
        if near.any():
            radius = np.broadcast_to(r, c.shape)[near]
            c[near] = geo.segment_box_clearance(a[near], b[near], zone.center,
                                                zone.half_extents) - radius
        return c

    @staticmethod
    def _box_clearance(volumes: kin.ArmVolumes, zone: Box, margin: float) -> np.ndarray:
        """(S, 3) hand and finger box clearances to a zone, the same way."""
        center, half = volumes.box_center, volumes.box_half
        c = geo.box_signed_distance(center, zone.center, zone.half_extents) \
            - np.linalg.norm(half, axis=-1)
        near = c < margin
        if near.any():
            c[near] = geo.obb_box_clearance(center[near], volumes.box_rot[near],
                                            np.broadcast_to(half, (*c.shape, 3))[near],
                                            zone.center, zone.half_extents)
        return c
