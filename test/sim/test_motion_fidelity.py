"""The motion the shield checks is the motion the arm makes: the planner's predicted TCP path and
peak speed match what MuJoCo's arm does under the simulated joint_trajectory_controller, and under
the shield no step breaks a limit the shield is responsible for."""

from __future__ import annotations

import copy
from collections import Counter

import mujoco
import numpy as np
import pytest

from safari_ros.config import load_config
from safari_ros.evaluation.loop import ShieldGate
from safari_ros.robot.primitives import PATH_SAMPLES
from safari_ros.sim import TabletopSim

SLICE_S = 0.01  # how finely the arm's motion is measured
MOVES = ("move_forward", "move_backward", "move_left", "move_right", "move_up", "move_down",
         "home")


def _tcp_speed(sim: TabletopSim) -> float:
    vel = np.zeros(6)
    mujoco.mj_objectVelocity(sim.model, sim.data, mujoco.mjtObj.mjOBJ_SITE, sim._tcp, vel, 0)
    return float(np.linalg.norm(vel[3:]))


def _gate(cfg: dict) -> ShieldGate:
    return ShieldGate(cfg, {"enabled": True, "learned_check": False, "learned_critic": "c"},
                      gamma=0.95, n_envs=1)


def test_predicted_path_and_peak_speed_match_the_arm() -> None:
    cfg = copy.deepcopy(load_config())
    sim = TabletopSim(cfg)
    index = {a.name: a.index for a in sim.actions}
    rng = np.random.default_rng(0)
    ratios, errors = [], []
    for episode in range(3):
        sim.reset(seed=episode)
        for _ in range(25):
            name = str(rng.choice(MOVES))
            js = sim.joint_state()
            plan = copy.deepcopy(sim.planner).plan(sim.actions[index[name]], js.position,
                                                   0.04, js.velocity)
            predicted = plan.predicted()
            sim.command_action(index[name])
            horizon = min(plan.duration_s, sim.control_period)  # the next command preempts
            n = round(horizon / SLICE_S)
            measured_peak, tcp = 0.0, [sim.ee_position()]
            for _ in range(n):
                sim.advance(SLICE_S)
                measured_peak = max(measured_peak, _tcp_speed(sim))
                tcp.append(sim.ee_position())
            if name != "home" and predicted.peak_tcp_speed() > 0.03:  # skip blocked moves
                ratios.append(measured_peak / predicted.peak_tcp_speed())
                # Samples of the predicted path vs the measured TCP at the same times.
                idx = np.round(np.linspace(0, n, PATH_SAMPLES)).astype(int)
                errors.append(np.max(np.linalg.norm(np.array(tcp)[idx] - predicted.tcp_path,
                                                    axis=1)))
    sim.close()
    ratios, errors = np.array(ratios), np.array(errors)
    print(f"{len(ratios)} moves: measured/predicted peak TCP speed median "
          f"{np.median(ratios):.2f}, max {ratios.max():.2f}; path error max "
          f"{errors.max() * 1e3:.1f} mm")
    assert len(ratios) > 30
    assert 0.8 < np.median(ratios) < 1.2 and ratios.max() < 1.45
    assert np.median(errors) < 0.005  # the arm lags its setpoint by millimetres


@pytest.mark.parametrize("seed", [0, 1])
def test_no_step_under_the_shield_breaks_a_limit_it_checks(seed: int) -> None:
    """A policy that keeps proposing its two favourite actions drives the arm to the workspace
    faces, into zones and to stretched poses; the shield lets nothing through that makes the
    simulator's monitors fire for keep-out, speed or joint limits."""
    cfg = copy.deepcopy(load_config())
    sim, gate = TabletopSim(cfg), _gate(cfg)
    rng = np.random.default_rng(seed)
    n_actions = len(sim.actions)
    fired, refused = Counter(), 0
    for episode in range(6):
        sim.reset(seed=100 * seed + episode)
        gate.reset(0)
        favourites = rng.choice(n_actions, 2, replace=False)
        for _ in range(60):
            proposed = int(rng.choice(favourites) if rng.random() < 0.9
                           else rng.integers(n_actions))
            action, intervened, _ = gate.decide(0, sim, proposed, np.zeros(n_actions))
            refused += intervened
            fired.update(k for k, v in sim.step(action).cost_sources.items() if v)
    sim.close()
    print(f"seed {seed}: refused {refused}, monitors fired {dict(fired)}")
    assert refused > 20  # the policy did press against the limits
    assert fired["keep_out"] == fired["ee_speed"] == fired["joint_limits"] == 0, fired
