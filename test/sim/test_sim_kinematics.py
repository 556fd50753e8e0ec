"""The MJCF arm follows the Panda DH table and joint limits; IK reaches lattice goals."""

from __future__ import annotations

import mujoco
import numpy as np

from safari_ros.robot import kinematics as kin
from safari_ros.sim import JOINT_NAMES, TabletopSim


def test_mujoco_forward_kinematics_matches_dh(sim: TabletopSim) -> None:
    rng = np.random.default_rng(0)
    m, d = sim.model, sim.data
    for _ in range(20):
        q = rng.uniform(kin.JOINT_LOWER, kin.JOINT_UPPER)
        for name, v in zip(kin.ARM_JOINTS, q, strict=True):
            d.joint(name).qpos = v
        mujoco.mj_kinematics(m, d)
        frames = kin.link_frames(q)
        for i in range(7):
            np.testing.assert_allclose(d.body(f"panda_link{i + 1}").xpos, frames[i][:3, 3],
                                       atol=1e-8)
        pos, rot = kin.tcp_pose(q)
        np.testing.assert_allclose(d.site("panda_hand_tcp").xpos, pos, atol=1e-8)
        np.testing.assert_allclose(d.site("panda_hand_tcp").xmat.reshape(3, 3), rot, atol=1e-8)
    sim.reset(seed=0)


def test_joint_limits_are_the_pandas(sim: TabletopSim) -> None:
    ranges = np.array([sim.model.joint(j).range for j in JOINT_NAMES[:7]])
    np.testing.assert_allclose(ranges[:, 0], [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973,
                                              -0.0175, -2.8973])
    np.testing.assert_allclose(ranges[:, 1], [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525,
                                              2.8973])


def test_ik_reaches_the_task_region_pointing_down(sim: TabletopSim) -> None:
    for target in ([0.36, -0.12, 0.025], [0.68, 0.08, 0.025], [0.5, 0.0, 0.4]):
        res = kin.solve_ik(np.array(target), sim.planner.tcp_rot, sim.home_q, q_rest=sim.home_q,
                           limit_margin=0.1)
        assert res.converged, target
        pos, rot = kin.tcp_pose(res.q)
        assert np.linalg.norm(pos - target) < 1e-3
        assert rot[2, 2] < -0.999  # TCP z axis points down
        assert np.all(res.q >= kin.JOINT_LOWER + 0.1 - 1e-9)
        assert np.all(res.q <= kin.JOINT_UPPER - 0.1 + 1e-9)
