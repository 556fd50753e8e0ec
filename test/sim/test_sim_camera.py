"""The RGB-D camera: depth in metres agrees with the known table plane through K and the pose."""

from __future__ import annotations

import mujoco
import numpy as np

from safari_ros.sim import TabletopSim


def _rotation(quat_xyzw: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.roll(quat_xyzw, 1))
    return mat.reshape(3, 3)


def _pixel_rays(sim: TabletopSim) -> np.ndarray:
    """Base-frame ray per pixel, scaled to unit optical-axis depth."""
    info = sim.camera_info()
    k = np.array(info["k"]).reshape(3, 3)
    v, u = np.mgrid[0:info["height"], 0:info["width"]]
    pix = np.stack([u, v, np.ones_like(u)], axis=-1).astype(float)
    _, quat = sim.camera_optical_pose()
    rot = _rotation(quat)
    return pix @ np.linalg.inv(k).T @ rot.T


def test_depth_matches_the_table_plane(sim: TabletopSim) -> None:
    sim.reset(seed=4)
    _, depth = sim.render_rgbd()
    seg = sim.render_segmentation()
    table = seg == sim.model.geom("table").id
    assert table.mean() > 0.5
    pos, _ = sim.camera_optical_pose()
    rays = _pixel_rays(sim)
    expected = -pos[2] / rays[..., 2]  # z-depth where the ray meets the plane z = 0
    err = np.abs(depth[table] - expected[table])
    assert err.max() < 0.01, err.max()


def test_object_projects_where_it_is_seen(sim: TabletopSim) -> None:
    sim.reset(seed=5, template="touch")
    seg = sim.render_segmentation()
    pos, quat = sim.camera_optical_pose()
    k = np.array(sim.camera_info()["k"]).reshape(3, 3)
    rot = _rotation(quat)
    for p in sim.object_positions().values():
        u, v, w = k @ rot.T @ (p - pos)
        seen = seg[round(v / w), round(u / w)]
        # The pixel shows the very body whose centre was projected.
        np.testing.assert_allclose(sim.data.xpos[sim.model.geom_bodyid[seen]], p)


def test_camera_info_is_ros_shaped(sim: TabletopSim) -> None:
    info = sim.camera_info()
    assert info["frame_id"] == "camera_color_optical_frame"
    assert len(info["k"]) == 9 and len(info["p"]) == 12 and len(info["d"]) == 5
    assert info["k"][0] == info["k"][4] > 0 and info["k"][2] == (info["width"] - 1) / 2
