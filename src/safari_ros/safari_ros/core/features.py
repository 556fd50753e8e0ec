"""Non-image parts of the state: pooled depth and the proprioception vector (numpy, no torch)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pool_depth", "proprio_vector"]


def pool_depth(depth_m: np.ndarray, grid: Sequence[int], max_range_m: float = 5.0) -> np.ndarray:
    """Mean valid depth (metres) of each cell of a rows x cols grid, row-major, float32.

    Invalid pixels (NaN, inf, <= 0: no return) are ignored; a cell with none reads max_range_m
    (treated as free space far away rather than a made-up obstacle distance).
    """
    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    rows, cols = int(grid[0]), int(grid[1])
    if d.shape[0] < rows or d.shape[1] < cols:
        raise ValueError(f"depth image {d.shape} smaller than the grid {rows}x{cols}")
    valid = np.isfinite(d) & (d > 0)
    d = np.where(valid, np.minimum(d, max_range_m), 0.0)
    r_edges = np.linspace(0, d.shape[0], rows + 1).astype(int)
    c_edges = np.linspace(0, d.shape[1], cols + 1).astype(int)
    out = np.empty((rows, cols), np.float32)
    for i in range(rows):
        for j in range(cols):
            cell = (slice(r_edges[i], r_edges[i + 1]), slice(c_edges[j], c_edges[j + 1]))
            n = valid[cell].sum()
            out[i, j] = d[cell].sum() / n if n else max_range_m
    return out.reshape(-1)


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
