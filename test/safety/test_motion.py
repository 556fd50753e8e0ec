"""What the shield's motion check rests on, each against an independent computation: the volumes
are the simulator's geoms (MuJoCo), the clearances never exceed MuJoCo's distances, the cubic's
extremes are exact, the travel and TCP speed bounds hold at every dense sample."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from safari_ros.config import load_config, safety_limits
from safari_ros.robot import kinematics as kin
from safari_ros.robot.trajectory import Cubic
from safari_ros.safety import geometry as geo
from safari_ros.sim import scene

CFG = load_config()
LIMITS = safety_limits(CFG)
RESOLUTION = float(CFG["safety"]["sweep_resolution_m"])


@pytest.fixture(scope="module")
def mj():
    model = mujoco.MjModel.from_xml_string(scene.build_mjcf(CFG))
    data = mujoco.MjData(model)
    qadr = [model.joint(j).qposadr[0] for j in kin.ARM_JOINTS + kin.FINGER_JOINTS]
    return model, data, qadr


def _pose(mj, q: np.ndarray, finger: float) -> None:
    model, data, qadr = mj
    data.qpos[qadr] = [*q, finger, finger]
    mujoco.mj_kinematics(model, data)


def _random_cubic(rng: np.random.Generator, fast: bool = False) -> Cubic:
    q0 = rng.uniform(kin.JOINT_LOWER, kin.JOINT_UPPER)
    q1 = np.clip(q0 + rng.normal(0, 0.3, 7), kin.JOINT_LOWER, kin.JOINT_UPPER)
    v0 = rng.normal(0, 1.0 if fast else 0.2, 7)
    return Cubic(q0, v0, q1, float(rng.uniform(0.2, 3.0)))


def test_the_volumes_are_the_simulators_geoms(mj):
    model, data, _ = mj
    rng = np.random.default_rng(0)
    q = rng.uniform(kin.JOINT_LOWER, kin.JOINT_UPPER, (30, 7))
    finger = rng.uniform(*kin.FINGER_RANGE, 30)
    vol = kin.arm_volumes(kin.link_frames_batch(q), finger)
    arm_root = model.body("panda_link0").id
    collidable = {model.geom(g).name for g in range(model.ngeom)
                  if model.body_rootid[model.geom_bodyid[g]] == arm_root
                  and model.geom_contype[g] != 0}
    assert collidable == set(kin.CAPSULE_NAMES) | set(kin.BOX_NAMES)  # nothing left out
    for i in range(len(q)):
        _pose(mj, q[i], finger[i])
        for k, name in enumerate(kin.CAPSULE_NAMES):
            g = model.geom(name).id
            np.testing.assert_allclose((vol.seg_a[i, k] + vol.seg_b[i, k]) / 2,
                                       data.geom_xpos[g], atol=1e-9)
            axis = data.geom_xmat[g].reshape(3, 3)[:, 2] * model.geom_size[g][1]
            np.testing.assert_allclose(np.abs(vol.seg_b[i, k] - vol.seg_a[i, k]),
                                       np.abs(2 * axis), atol=1e-9)
            assert vol.radius[k] == pytest.approx(model.geom_size[g][0])
        for b, name in enumerate(kin.BOX_NAMES):
            g = model.geom(name).id
            np.testing.assert_allclose(vol.box_center[i, b], data.geom_xpos[g], atol=1e-9)
            np.testing.assert_allclose(vol.box_rot[i, b], data.geom_xmat[g].reshape(3, 3),
                                       atol=1e-9)
            np.testing.assert_allclose(vol.box_half[b], model.geom_size[g], atol=1e-12)


def test_clearances_are_lower_bounds_of_mujocos_distances(mj):
    """Capsule clearance exact to 1e-6, box clearance never above MuJoCo's (exact inside)."""
    model, data, _ = mj
    rng = np.random.default_rng(1)
    zone = LIMITS.keep_out_zones[0]
    zone_geom = model.geom(f"keep_out/{zone.name}").id
    checked = overlapping = 0
    home = np.asarray(CFG["sim"]["home_joint_positions"], float)
    tool_down = kin.tcp_pose(home)[1]
    for _ in range(60):
        target = zone.center + rng.uniform(-1, 1, 3) * (zone.half_extents + 0.15)
        q = kin.solve_ik(target, tool_down, home, q_rest=home).q
        finger = rng.uniform(*kin.FINGER_RANGE)
        vol = kin.arm_volumes(kin.link_frames_batch(q), finger)
        _pose(mj, q, finger)
        caps = geo.segment_box_clearance(vol.seg_a[0], vol.seg_b[0], zone.center,
                                         zone.half_extents) - vol.radius
        boxes = geo.obb_box_clearance(vol.box_center[0], vol.box_rot[0], vol.box_half,
                                      zone.center, zone.half_extents)
        for k, name in enumerate(kin.CAPSULE_NAMES):
            d = mujoco.mj_geomDistance(model, data, model.geom(name).id, zone_geom, 10.0, None)
            if d > 0:
                assert caps[k] == pytest.approx(d, abs=1e-6)
            else:  # in overlap, our measure is the deepest point's depth: not above MuJoCo's
                assert caps[k] <= 1e-6
            checked += 1
        for b, name in enumerate(kin.BOX_NAMES):
            d = mujoco.mj_geomDistance(model, data, model.geom(name).id, zone_geom, 10.0, None)
            assert boxes[b] <= d + 1e-6
            if d < 0:
                overlapping += 1
                assert boxes[b] == pytest.approx(d, abs=1e-4)  # SAT of two boxes is exact
            checked += 1
    assert checked > 500 and overlapping > 5, (checked, overlapping)


def test_the_cubics_extremes_are_exact():
    rng = np.random.default_rng(2)
    s = np.linspace(0, 1, 20001)
    for _ in range(50):
        cubic = _random_cubic(rng, fast=True)
        q, qd = cubic.positions(s), cubic.velocities(s)
        low, high = cubic.position_range()
        assert np.all(low <= q.min(axis=0) + 1e-12) and np.all(high >= q.max(axis=0) - 1e-12)
        np.testing.assert_allclose(low, q.min(axis=0), atol=1e-7)
        np.testing.assert_allclose(high, q.max(axis=0), atol=1e-7)
        peak = cubic.peak_speed()
        assert np.all(peak >= np.abs(qd).max(axis=0) - 1e-12)
        np.testing.assert_allclose(peak, np.abs(qd).max(axis=0), atol=1e-6)
        # The velocity is the derivative of the positions, the end at rest.
        np.testing.assert_allclose(np.gradient(q, s * cubic.duration, axis=0)[1:-1],
                                   qd[1:-1], atol=1e-4)
        assert np.allclose(qd[-1], 0) and np.allclose(q[-1], cubic.p1)


def test_no_arm_point_moves_more_between_samples_than_the_bound(record_property):
    """Dense samples of every capsule end and box corner between two sweep samples stay within
    the travel bound the check uses, and the samples are dense enough for the resolution."""
    rng = np.random.default_rng(3)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    tried = 0
    for _ in range(40):
        cubic = _random_cubic(rng, fast=rng.random() < 0.3)
        s = kin.sweep_fractions(cubic, 0.0, RESOLUTION)
        travel = kin.interval_travel(cubic, s)
        cap_bound, box_bound = travel @ kin.REACH_CAPSULES.T, travel @ kin.REACH_BOXES.T
        if len(s) - 1 < kin.MAX_SWEEP_INTERVALS:
            assert max(cap_bound.max(), box_bound.max()) <= RESOLUTION * (1 + 1e-9)
        for k in rng.choice(len(s) - 1, 4, replace=False):
            fine = np.linspace(s[k], s[k + 1], 60)
            vol = kin.arm_volumes(kin.link_frames_batch(cubic.positions(fine)), 0.04)
            points = np.concatenate([vol.seg_a, vol.seg_b], axis=1)
            moved = np.linalg.norm(points - points[:1], axis=-1).max(axis=0)
            assert np.all(moved <= np.tile(cap_bound[k], 2) + 1e-9)
            offsets = np.einsum("nbij,bcj->nbci", vol.box_rot,
                                corners[None] * vol.box_half[:, None])
            box_points = vol.box_center[:, :, None] + offsets  # (n, box, corner, 3)
            box_moved = np.linalg.norm(box_points - box_points[:1], axis=-1).max(axis=(0, 2))
            assert np.all(box_moved <= box_bound[k] + 1e-9)
            tried += 1
    record_property("intervals", tried)


def test_the_tcp_speed_bound_is_above_every_dense_sample():
    rng = np.random.default_rng(4)
    for _ in range(40):
        cubic = _random_cubic(rng, fast=rng.random() < 0.5)
        s = kin.sweep_fractions(cubic, 0.0, RESOLUTION)
        bound = kin.tcp_speed_bound(cubic, s)
        fine = np.linspace(0, 1, 4001)
        frames = kin.link_frames_batch(cubic.positions(fine))
        speeds = np.linalg.norm(kin.tcp_velocities(frames, cubic.velocities(fine)), axis=1)
        assert speeds.max() <= bound + 1e-9
        # ... and not so loose that ordinary motions fail: within 30 % at this resolution.
        assert bound <= 1.3 * speeds.max() + 0.02, (bound, speeds.max())
