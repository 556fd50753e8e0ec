"""The depth lifted into the base frame per patch of the backbone's view (core/features), on
real MuJoCo renders: the table reads as the table, the named object where it stands."""

from __future__ import annotations

import numpy as np
import pytest

from safari_ros.core.features import DEPTH_CHANNELS, lift_depth
from safari_ros.core.hparams import learning_config
from safari_ros.core.model import depth_lifter
from safari_ros.robot.camera import camera_pose
from safari_ros.sim import TabletopSim


def _cells(sim: TabletopSim) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, lifted cells (P, DEPTH_CHANNELS)) of the current scene, as perception builds them."""
    rgb, depth = sim.render_rgbd()
    lift = depth_lifter(learning_config(sim.cfg))
    return rgb, lift(depth, sim.camera_matrix()).reshape(-1, DEPTH_CHANNELS)


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_the_named_object_is_found_where_it_stands_and_the_table_on_the_table(
        sim: TabletopSim, seed: int) -> None:
    sim.reset(seed=seed, template="touch")
    _, cells = _cells(sim)
    grid = learning_config(sim.cfg).heads.depth_grid
    assert cells.shape == (grid[0] * grid[1], DEPTH_CHANNELS)
    empty = cells[:, 3] == 0
    assert empty.mean() > 0.4  # most of the view is bare table
    assert np.abs(cells[empty, 2]).max() < 0.005  # ... and lifts onto z = 0
    obj = sim.target_object_position()
    standing = cells[~empty]
    nearest = standing[np.argmin(np.linalg.norm(standing[:, :2] - obj[:2], axis=1))]
    # the visible surface of a 4-5 cm object: its centroid within 2.5 cm of the object's centre,
    # against a patch of more than a 4 cm lattice step
    assert np.linalg.norm(nearest[:2] - obj[:2]) < 0.025, (nearest, obj)
    assert 0.01 < nearest[2] < 0.06


def test_pixels_without_a_return_are_ignored_and_a_cell_with_none_reads_zero(
        sim: TabletopSim) -> None:
    sim.reset(seed=5)
    _, depth = sim.render_rgbd()
    k, pose = sim.camera_matrix(), camera_pose(sim.cfg["sim"]["camera"])
    clean = lift_depth(depth, k, pose, (4, 4)).reshape(4, 4, DEPTH_CHANNELS)
    h, w = depth.shape
    broken = depth.copy()
    broken[: h // 4, : w // 4] = np.nan  # cell (0, 0): no return at all
    broken[h // 2:, w // 2:][::2] = np.inf  # half of the other cells' rows: no return
    broken[h // 2:, w // 2:][1::4] = 0.0
    lifted = lift_depth(broken, k, pose, (4, 4)).reshape(4, 4, DEPTH_CHANNELS)
    assert np.all(np.isfinite(lifted))
    assert np.all(lifted[0, 0] == 0.0)
    # a bare table cell keeps its place from the valid pixels left
    assert np.allclose(lifted[3, 3, :3], clean[3, 3, :3], atol=0.02)


def test_intrinsics_or_windows_that_do_not_fit_are_refused(sim: TabletopSim) -> None:
    sim.reset(seed=5)
    _, depth = sim.render_rgbd()
    pose = camera_pose(sim.cfg["sim"]["camera"])
    with pytest.raises(ValueError, match="not a pinhole model"):
        lift_depth(depth, np.zeros((3, 3)), pose, (8, 8))
    with pytest.raises(ValueError, match="does not fit"):
        lift_depth(depth, sim.camera_matrix(), pose, (8, 8), window=(300, 0, 340, 40))
    with pytest.raises(ValueError, match="must be"):
        lift_depth(depth[None], sim.camera_matrix(), pose, (8, 8))
