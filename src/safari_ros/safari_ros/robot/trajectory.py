"""Joint-space interpolation between trajectory points, as ros2_control's
joint_trajectory_controller does it: linear when points give positions only, a cubic Hermite
spline when they give velocities too (the controller then starts from the measured state,
velocity included, so a new command never makes the setpoint jump in velocity).

The simulator's controller and the shield's motion prediction both call these functions: the path
the shield checks is the path the arm is driven along.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cubic_hermite", "sample_times"]


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
