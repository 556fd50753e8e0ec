"""Clearances between the arm's volumes and axis-aligned boxes, vectorised, in plain numpy.

Every function returns a *lower bound* on the signed distance (metres; negative: overlap), never
an estimate that could be too high: a shield that rounds in the arm's favour has a hole. Where the
value is exact it says so. Signed distances to a convex set are 1-Lipschitz in the points, so a
volume whose points each move at most L changes its clearance by at most L: what makes a sampled
path checkable between its samples (safari_ros.safety.motion).
"""

from __future__ import annotations

import numpy as np

# Golden-section steps of the capsule search: the bracket shrinks to 0.618^40 = 4e-9 of the
# capsule's length (under 1e-9 m for the Panda's), which is then subtracted as a bound.
GOLDEN_STEPS = 40
_INV_PHI = (np.sqrt(5.0) - 1.0) / 2.0


def box_signed_distance(p: np.ndarray, center: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Exact signed Euclidean distance of points p (..., 3) to a box: positive outside,
    minus the depth to the nearest face inside. Convex and 1-Lipschitz in p."""
    q = np.abs(p - center) - half
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)


def segment_box_clearance(a: np.ndarray, b: np.ndarray, center: np.ndarray,
                          half: np.ndarray) -> np.ndarray:
    """Lower bound, within 1e-9 m of the exact value, on the smallest signed distance of the
    points of segments a..b (..., 3) to a box: a capsule's clearance plus its radius.

    f(u) = box_signed_distance(a + u (b - a)) is convex in u, so a golden-section search keeps a
    minimiser in its bracket; f is |b - a|-Lipschitz in u, so the value at the bracket's middle
    minus |b - a| * half the bracket is below the true minimum.
    """
    d = b - a
    lo, hi = np.zeros(a.shape[:-1]), np.ones(a.shape[:-1])
    x1, x2 = hi - _INV_PHI, lo + _INV_PHI

    def f(u: np.ndarray) -> np.ndarray:
        return box_signed_distance(a + u[..., None] * d, center, half)

    f1, f2 = f(x1), f(x2)
    for _ in range(GOLDEN_STEPS):
        left = f1 <= f2  # a minimiser lies in [lo, x2]; else in [x1, hi]
        lo, hi = np.where(left, lo, x1), np.where(left, x2, hi)
        new = np.where(left, hi - _INV_PHI * (hi - lo), lo + _INV_PHI * (hi - lo))
        f_new = f(new)
        x1, x2, f1, f2 = (np.where(left, new, x2), np.where(left, x1, new),
                          np.where(left, f_new, f2), np.where(left, f1, f_new))
    mid = 0.5 * (lo + hi)
    return f(mid) - np.linalg.norm(d, axis=-1) * 0.5 * (hi - lo)


def obb_box_clearance(center: np.ndarray, rot: np.ndarray, half: np.ndarray,
                      zone_center: np.ndarray, zone_half: np.ndarray) -> np.ndarray:
    """Lower bound on the signed distance of oriented boxes (center (..., 3), rot (..., 3, 3) with
    the box axes as columns, half (..., 3)) to one axis-aligned box, by the separating axis test
    over the 15 axes of two boxes: exact (minus the penetration depth) where they overlap, and
    where they are apart the widest gap along an axis, which the distance is at least."""
    world = np.broadcast_to(np.eye(3), rot.shape)
    own = np.swapaxes(rot, -1, -2)  # rows: the box's axes
    cross = np.cross(world[..., :, None, :], own[..., None, :, :]).reshape(*rot.shape[:-2], 9, 3)
    axes = np.concatenate([world, own, cross], axis=-2)  # (..., 15, 3)
    norm = np.linalg.norm(axes, axis=-1)
    usable = norm > 1e-9  # parallel edges give no axis; the face axes already cover them
    axes = axes / np.where(usable, norm, 1.0)[..., None]
    offset = np.abs(axes @ (center - zone_center)[..., None])[..., 0]
    zone_reach = np.abs(axes) @ zone_half
    box_reach = (np.abs(axes @ rot) @ half[..., None])[..., 0]
    gap = np.where(usable, offset - zone_reach - box_reach, -np.inf)
    return gap.max(axis=-1)


def box_lowest_z(center: np.ndarray, rot: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Exact height of the lowest corner of oriented boxes (what faces the table)."""
    return center[..., 2] - (np.abs(rot[..., 2, :]) * half).sum(axis=-1)


def inside_clearance(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Distance of points p (..., 3) inside a box to its nearest face (exact), negative outside
    (minus the largest face violation, which the distance outside is at least): 1-Lipschitz."""
    return np.minimum(p - lo, hi - p).min(axis=-1)
