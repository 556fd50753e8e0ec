"""Non-image parts of the state (numpy, no torch): the depth image lifted into the base frame
per patch of the backbone's view, and the proprioception vector.

Why lift: the policy must move the gripper to within half a lattice step (2 cm) of the object
the instruction names, but one patch of the backbone's view spans more than a step
(bench/bench_localisation.py), so a readout of *which* patch holds the object cannot say
*where* it is precisely enough. The depth image can: the points of a patch that stand above the
table are the object's, and their centroid in the base frame is where it is, to millimetres.
The heads (core/heads.SpatialReadout) weight these centroids by where the instruction's phrases
attend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from safari_ros.robot.camera import CameraPose

__all__ = ["DEPTH_CHANNELS", "DepthLifter", "lift_depth", "pinhole_intrinsics", "proprio_vector"]

# Per cell of the lifted depth: x, y, z (base frame, m) of its points above the table, and the
# share of its pixels that are such points.
DEPTH_CHANNELS = 4


def pinhole_intrinsics(k: np.ndarray | Sequence[float]) -> np.ndarray:
    """CameraInfo.k as a 3x3 matrix; ValueError when it is no pinhole model (not 9 finite
    values with positive focal lengths)."""
    m = np.asarray(k, float)
    if m.size != 9 or not np.isfinite(m).all() or m.flat[0] <= 0 or m.flat[4] <= 0:
        raise ValueError(f"camera intrinsics {m.reshape(-1).tolist()} are not a pinhole model")
    return m.reshape(3, 3)


def lift_depth(depth_m: np.ndarray, k: np.ndarray, pose: CameraPose, grid: Sequence[int],
               window: Sequence[int] | None = None, min_height_m: float = 0.01) -> np.ndarray:
    """Per cell of a rows x cols grid over `window` (x0, y0, x1, y1 pixels; None = the whole
    image), row-major: the base-frame centroid (m) of the cell's points higher than
    min_height_m above the table top (z = 0, REP-103 base_link on the table) and their share of
    the cell's pixels, (rows * cols * DEPTH_CHANNELS,) float32. A cell without such points
    gives the centroid of its valid points (the table) and share 0; one without any valid pixel
    (NaN, inf, <= 0: no return) zeros. k: the depth camera's 3x3 intrinsics (CameraInfo.k)."""
    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    k = pinhole_intrinsics(k)
    x0, y0, x1, y1 = (0, 0, d.shape[1], d.shape[0]) if window is None else map(int, window)
    rows, cols = int(grid[0]), int(grid[1])
    if not (0 <= x0 and x1 - x0 >= cols and 0 <= y0 and y1 - y0 >= rows
            and x1 <= d.shape[1] and y1 <= d.shape[0]):
        raise ValueError(f"window {(x0, y0, x1, y1)} does not fit a {rows}x{cols} grid in a "
                         f"depth image of shape {d.shape}")
    z = d[y0:y1, x0:x1]
    valid = np.isfinite(z) & (z > 0)
    z = np.where(valid, z, 0.0)
    u, v = np.meshgrid(np.arange(x0, x1), np.arange(y0, y1))
    optical = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], axis=-1)
    points = optical @ pose.optical_to_base.T + pose.position
    above = valid & (points[..., 2] > min_height_m)
    r_edges = np.linspace(0, z.shape[0], rows + 1).astype(int)
    c_edges = np.linspace(0, z.shape[1], cols + 1).astype(int)

    def cell_sums(a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(a, r_edges[:-1], axis=0), c_edges[:-1], axis=1)

    n_above, n_valid = cell_sums(above.astype(float)), cell_sums(valid.astype(float))
    sum_above = cell_sums(points * above[..., None])
    sum_valid = cell_sums(points * valid[..., None])
    pixels = np.outer(np.diff(r_edges), np.diff(c_edges))
    centroid = np.where(n_above[..., None] > 0, sum_above / np.maximum(n_above, 1)[..., None],
                        sum_valid / np.maximum(n_valid, 1)[..., None])
    out = np.concatenate([centroid, (n_above / pixels)[..., None]], axis=-1)
    return out.astype(np.float32).reshape(-1)


@dataclass(frozen=True)
class DepthLifter:
    """lift_depth for one camera mounting and one backbone view: the grid is the backbone's
    patch grid, the window what the backbone sees of each image (FrozenClip.view_window)."""

    pose: CameraPose
    grid: tuple[int, int]
    min_height_m: float
    view_window: Callable[[int, int], tuple[int, int, int, int]]  # (h, w) -> x0, y0, x1, y1

    def __call__(self, depth_m: np.ndarray | None, k: np.ndarray | None) -> np.ndarray:
        """The lifted cells of one depth image; without a depth image or its intrinsics (a log
        with no depth or no CameraInfo) every cell reads "no return"."""
        if depth_m is None or k is None:
            return np.zeros(self.grid[0] * self.grid[1] * DEPTH_CHANNELS, np.float32)
        d = np.asarray(depth_m)
        return lift_depth(d, k, self.pose, self.grid, self.view_window(*d.shape[:2]),
                          self.min_height_m)


def proprio_vector(
    joint_positions: Sequence[float],
    joint_velocities: Sequence[float],
    ee_position: Sequence[float],
    n_joints: int,
) -> np.ndarray:
    """[positions (n), velocities (n), ee xyz (3)] as float32; refuses other lengths or NaN."""
    q = np.asarray(joint_positions, np.float32).reshape(-1)
    v = np.asarray(joint_velocities, np.float32).reshape(-1)
    ee = np.asarray(ee_position, np.float32).reshape(-1)
    if q.size != n_joints or v.size != n_joints or ee.size != 3:
        raise ValueError(
            f"proprioception needs {n_joints} positions, {n_joints} velocities and 3 ee "
            f"coordinates; got {q.size}, {v.size}, {ee.size}"
        )
    out = np.concatenate([q, v, ee])
    if not np.isfinite(out).all():
        raise ValueError("proprioception holds NaN/inf")
    return out
