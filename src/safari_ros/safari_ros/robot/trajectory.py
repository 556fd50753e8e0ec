"""Joint-space interpolation between trajectory points, as ros2_control's
joint_trajectory_controller does it: linear when points give positions only, a cubic Hermite
spline when they give velocities too (the controller then starts from the measured state,
velocity included, so a new command never makes the setpoint jump in velocity).

The simulator's controller and the shield's motion prediction both call these functions: the path
the shield checks is the path the arm is driven along. `Cubic` adds what the shield needs beyond
positions, in closed form rather than by sampling: each joint's exact peak speed, exact position
extremes and, per stretch of the path, the largest speed and acceleration (what bounds how far the
arm can move between two checked samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Cubic", "cubic_hermite", "sample_times"]


def cubic_hermite(p0: np.ndarray, v0: np.ndarray, p1: np.ndarray, v1: np.ndarray,
                  duration: float, s: np.ndarray | float) -> np.ndarray:
    """Positions at fractions s in [0, 1] of a segment from (p0, v0) to (p1, v1) lasting
    duration seconds; shape (len(s), n) for an array s, (n,) for a scalar."""
    s_arr = np.clip(np.atleast_1d(np.asarray(s, float)), 0.0, 1.0)[:, None]
    s2, s3 = s_arr**2, s_arr**3
    h00, h10 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s_arr
    h01, h11 = -2 * s3 + 3 * s2, s3 - s2
    out = h00 * p0 + h10 * duration * v0 + h01 * p1 + h11 * duration * v1
    return out if np.ndim(s) else out[0]


def sample_times(samples: int) -> np.ndarray:
    """Equally spaced fractions 0..1 (both ends included) at which a motion is checked."""
    if samples < 2:
        raise ValueError("a path needs at least its two end points")
    return np.linspace(0.0, 1.0, samples)


@dataclass(frozen=True)
class Cubic:
    """The cubic Hermite segment from (p0, v0) to (p1, v1) over `duration` s, per joint.

    With s = t / duration, the velocity is a quadratic in s and the acceleration a line:
        qdot(s) = a2 s^2 + a1 s + a0,   qddot(s) = (2 a2 s + a1) / duration,
        a2 = (6 (p0 - p1) + 3 T (v0 + v1)) / T,  a1 = (6 (p1 - p0) - T (4 v0 + 2 v1)) / T,  a0 = v0.
    So a joint's peak speed over any stretch is at the stretch's ends or at the quadratic's vertex,
    and its position extremes at the path's ends or where qdot = 0: all exact, no sampling.
    """

    p0: np.ndarray
    v0: np.ndarray
    p1: np.ndarray
    duration: float
    v1: np.ndarray | None = None  # None: at rest at the end (what the shield commands)

    def __post_init__(self) -> None:
        for name in ("p0", "v0", "p1"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), float))
        v1 = np.zeros_like(self.p1) if self.v1 is None else np.asarray(self.v1, float)
        object.__setattr__(self, "v1", v1)
        t = float(self.duration)
        object.__setattr__(self, "_coef", (
            (6 * (self.p0 - self.p1) + 3 * t * (self.v0 + v1)) / t,
            (6 * (self.p1 - self.p0) - t * (4 * self.v0 + 2 * v1)) / t,
            self.v0,
        ))

    def positions(self, s: np.ndarray | float) -> np.ndarray:
        """Joint positions at fractions s of the duration: (len(s), n), or (n,) for a scalar."""
        return cubic_hermite(self.p0, self.v0, self.p1, self.v1, self.duration, s)

    def velocities(self, s: np.ndarray | float) -> np.ndarray:
        """Joint velocities (rad/s) at fractions s: (len(s), n), or (n,) for a scalar."""
        a2, a1, a0 = self._coef
        s_arr = np.atleast_1d(np.asarray(s, float))[:, None]
        out = (a2 * s_arr + a1) * s_arr + a0
        return out if np.ndim(s) else out[0]

    def accelerations(self, s: np.ndarray | float) -> np.ndarray:
        """Joint accelerations (rad/s^2) at fractions s: (len(s), n), or (n,) for a scalar."""
        a2, a1, _ = self._coef
        s_arr = np.atleast_1d(np.asarray(s, float))[:, None]
        out = (2 * a2 * s_arr + a1) / self.duration
        return out if np.ndim(s) else out[0]

    def speed_max(self, s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
        """Per stretch [s0[k], s1[k]] and joint, the exact largest |qdot|: (len(s0), n)."""
        a2, a1, _ = self._coef
        s0, s1 = np.asarray(s0, float)[:, None], np.asarray(s1, float)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = np.where(a2 != 0, -a1 / (2 * a2), 0.0)
        vertex = np.clip(np.nan_to_num(vertex), s0, s1)  # outside the stretch: an end again
        return np.maximum.reduce([np.abs(self._speed_at(s0)), np.abs(self._speed_at(s1)),
                                  np.abs(self._speed_at(vertex))])

    def _speed_at(self, s: np.ndarray) -> np.ndarray:
        a2, a1, a0 = self._coef
        return (a2 * s + a1) * s + a0

    def acceleration_max(self, s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
        """Per stretch and joint, the exact largest |qddot| (a line: one of the ends)."""
        acc = self.accelerations(np.concatenate([np.asarray(s0, float), np.asarray(s1, float)]))
        n = len(np.asarray(s0))
        return np.maximum(np.abs(acc[:n]), np.abs(acc[n:]))

    def peak_speed(self) -> np.ndarray:
        """Each joint's exact largest |qdot| over the whole segment (rad/s)."""
        return self.speed_max(np.zeros(1), np.ones(1))[0]

    def position_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Each joint's exact (lowest, highest) position over the segment: the extremes of a
        cubic lie at its ends or where its derivative, a quadratic, is zero."""
        a2, a1, a0 = self._coef
        with np.errstate(divide="ignore", invalid="ignore"):
            disc = a1 * a1 - 4 * a2 * a0
            root = np.sqrt(np.maximum(disc, 0.0))
            # The stable pair of roots (no cancellation): q = -(a1 + sign(a1) root) / 2.
            q = -0.5 * (a1 + np.where(a1 >= 0, root, -root))
            r1 = np.where(a2 != 0, q / a2, np.where(a1 != 0, -a0 / a1, 0.0))
            r2 = np.where(q != 0, a0 / q, 0.0)
        # A missing root (disc < 0, NaN) becomes an end point: an extra candidate is harmless,
        # a missed one is not.
        cands = [np.zeros_like(a0), np.ones_like(a0), np.clip(np.nan_to_num(r1), 0, 1),
                 np.clip(np.nan_to_num(r2), 0, 1)]
        values = np.stack([self._position_per_joint(c) for c in cands])
        return values.min(axis=0), values.max(axis=0)

    def _position_per_joint(self, s: np.ndarray) -> np.ndarray:
        """Joint j's position at its own fraction s[j]."""
        s2, s3 = s * s, s * s * s
        t = self.duration
        return ((2 * s3 - 3 * s2 + 1) * self.p0 + (s3 - 2 * s2 + s) * t * self.v0
                + (3 * s2 - 2 * s3) * self.p1 + (s3 - s2) * t * self.v1)
