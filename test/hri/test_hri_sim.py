"""The person in the MuJoCo tabletop (sim/person.py): speeds measured from the simulated
geometry, separation against a hand computation, the stopping table re-measured, and the
tabletop unchanged without an `hri` section."""

from __future__ import annotations

import copy

import mujoco
import numpy as np
import pytest

from safari_ros.config import load_config
from safari_ros.robot import kinematics as kin
from safari_ros.safety.ssm import ssm_params, stopping
from safari_ros.sim import COST_SOURCES, TabletopSim
from safari_ros.sim.person import FOREARM, HAND, PersonPath, person_xml
from safari_ros.sim.scene import build_mjcf

TICK = 0.01  # sim.servo_hz: the person is posed once per tick


def _hand_centre(sim: TabletopSim) -> np.ndarray:
    return sim.data.geom_xpos[sim.person.geoms[1]].copy()  # the hand capsule is centred on H


def test_person_moves_at_the_configured_speeds(hri_sim, cfg):
    sim = hri_sim
    sim.reset(seed=0)
    pad = np.array([0.5, 0.0])
    path = sim.person.reset(0, [pad], behaviour="reach_to_pad")
    # reach at 2.0 m/s to above the pad, hold, withdraw at 1.0 m/s
    assert np.allclose(path.points[1], [0.5, 0.0, 0.09])
    speeds = cfg["hri"]["person"]["speeds"]
    expected = [speeds["reach_mps"], 0.0, speeds["withdraw_mps"]]
    hands, times = [_hand_centre(sim)], [sim.sim_time]
    while sim.sim_time < path.duration + 0.1:
        sim.advance(TICK)
        hands.append(_hand_centre(sim))
        times.append(sim.sim_time)
        kp = sim.person.keypoints(sim.sim_time)
        # what the sim shows is what the keypoints say
        assert np.allclose(hands[-1], kp["hand"], atol=1e-9)
        assert np.allclose(sim.data.geom_xpos[sim.person.geoms[0]],
                           (kp["wrist"] + kp["elbow"]) / 2, atol=1e-9)
    hands, times = np.asarray(hands), np.asarray(times)
    measured = np.linalg.norm(np.diff(hands, axis=0), axis=1) / np.diff(times)
    for seg, speed in enumerate(expected):
        # ticks wholly inside the segment
        inside = (times[:-1] >= path.times[seg] - 1e-9) & (times[1:] <= path.times[seg + 1] + 1e-9)
        assert inside.sum() >= 5
        assert measured[inside] == pytest.approx(speed, abs=1e-6)
    assert measured.max() <= speeds["reach_mps"] + 1e-6
    assert np.allclose(hands[-1], cfg["hri"]["person"]["rest"])


def test_keypoints_never_outrun_the_hand_and_random_paths_are_seeded(hri_sim, cfg):
    person = hri_sim.person
    a = person.reset(5, [np.array([0.45, -0.05])])
    b = person.reset(5, [np.array([0.45, -0.05])])
    c = person.reset(6, [np.array([0.45, -0.05])])
    assert np.array_equal(a.points, b.points) and not np.array_equal(a.points, c.points)
    assert a.duration >= cfg["sim"]["episode_steps"] / cfg["sim"]["control_hz"]
    person.set_path(a)
    for t in np.arange(0.0, a.duration, 0.005):
        vel = person.velocities(t)
        hand = np.linalg.norm(vel["hand"])
        assert hand <= 2.0 + 1e-9
        assert np.linalg.norm(vel["wrist"]) <= hand + 1e-9
        assert np.linalg.norm(vel["elbow"]) <= hand + 1e-9
        # analytic velocities agree with the positions' finite differences
        h = 1e-6
        if not np.any(np.abs(a.times - t) < 2 * h):
            fd = (person.keypoints(t + h)["elbow"] - person.keypoints(t - h)["elbow"]) / (2 * h)
            assert np.allclose(fd, vel["elbow"], atol=1e-4)


def test_separation_matches_a_hand_computation(cfg):
    # The hand points along +x at height 0.2 on y = 0 with its fingertip point F at x = -0.3; the
    # arm is at home (q1 = 0). The nearest arm volume is link 1's capsule: axis x = y = 0 from
    # z = 0.333 - 0.19 = 0.143 to 0.333 - 0.02 = 0.313 (0.2 within it), radius 0.06. So the
    # separation is 0.3 - 0.06 (link 1) - 0.04 (hand radius) = 0.20 m. (Link 2's first capsule,
    # along y at z = 0.333, is sqrt(0.3^2 + 0.133^2) - 0.1 = 0.228 m away.)
    c = copy.deepcopy(cfg)
    c["hri"]["person"]["shoulder"] = [-0.9, 0.0, 0.2]
    sim = TabletopSim(c)
    try:
        hand_len = c["hri"]["person"]["hand"]["length_m"]
        h = np.array([-0.3 - hand_len / 2, 0.0, 0.2])  # F = H + u * hand / 2
        sim.person.set_path(PersonPath(np.zeros(1), h[None]))
        sim.person.apply(sim.model, sim.data, 0.0)
        mujoco.mj_forward(sim.model, sim.data)
        assert np.allclose(sim.data.qpos[sim._qadr[:7]], sim.home_q)
        sep = sim.person.min_separation(sim.model, sim.data, sim._robot_geoms)
        assert sep == pytest.approx(0.3 - kin.LINK_CAPSULES[1][0][2] - 0.04, abs=1e-6)
        assert sep == pytest.approx(0.20, abs=1e-6)
        # The arm holds still: no separation cost however near; no contact yet.
        costs = sim.cost_sources()
        assert costs["separation"] == 0 and costs["person_contact"] == 0
    finally:
        sim.close()


def test_separation_and_contact_costs_while_the_arm_moves(hri_sim):
    sim = hri_sim
    sim.reset(seed=0)
    # The hand held still just under the TCP's path: the arm moving down towards it breaks S_p
    tcp = sim.ee_position()
    sim.person.set_path(PersonPath(np.zeros(1), (tcp - [0.0, 0.0, 0.12])[None]))
    down = next(a.index for a in sim.actions if a.name == "move_down")
    flags = {"separation": 0, "person_contact": 0}
    for _ in range(4):
        r = sim.step(down)
        for k in flags:
            flags[k] |= r.cost_sources[k]
    assert set(r.cost_sources) == set(COST_SOURCES) | {"separation", "person_contact"}
    assert flags == {"separation": 1, "person_contact": 1}


def test_stopping_table_holds_for_the_simulated_arm(hri_sim):
    # Re-measures config hri.ssm.stopping.table: the arm at speed is told to hold its measured
    # pose; how far (and for how long) its TCP keeps going must be within the table's values.
    sim, p = hri_sim, ssm_params(hri_sim.cfg)
    for joint, rate in ((1, 0.5), (3, 1.2)):
        sim.reset(seed=0)
        sim.person.set_path(PersonPath(np.zeros(1), np.array([[0.5, -0.62, 0.15]])))
        q0 = sim.home_q.copy()
        q1 = q0.copy()
        q1[joint] += rate
        sim.apply_joint_trajectory(kin.ARM_JOINTS, [(q0 + 0.02 * (q1 - q0), 0.02), (q1, 1.0)])
        sim.advance(0.5)
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(sim.model, sim.data, mujoco.mjtObj.mjOBJ_SITE, sim._tcp, vel, 0)
        v0, p0 = float(np.linalg.norm(vel[3:])), sim.ee_position()
        sim.hold()
        far, t_far = 0.0, 0.0
        for k in range(1, 200):
            sim.advance(0.002)
            d = float(np.linalg.norm(sim.ee_position() - p0))
            if d > far:
                far, t_far = d, 0.002 * k
        t_s, s_s = stopping(p, v0)
        assert far <= s_s and t_far <= t_s, (v0, far, t_far)


def test_tabletop_without_hri_section_is_unchanged():
    cfg = load_config()
    assert "hri" not in cfg and person_xml(cfg) == ""
    assert FOREARM not in build_mjcf(cfg) and HAND not in build_mjcf(cfg)
    sim = TabletopSim(cfg)
    try:
        assert sim.person is None and sim.cost_source_names == COST_SOURCES
        assert tuple(sim.cost_sources()) == COST_SOURCES
        assert tuple(sim.step(0).cost_sources) == COST_SOURCES
        assert not any(sim.model.body(b).name.startswith("person/")
                       for b in range(sim.model.nbody))
    finally:
        sim.close()
