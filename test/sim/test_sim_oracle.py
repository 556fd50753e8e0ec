"""The scripted oracle solves every template: each task is solvable with the action set."""

from __future__ import annotations

import pytest
from sim_helpers import action

from safari_ros.sim import TabletopSim, record_episode
from safari_ros.sim.oracle import ScriptedOracle
from safari_ros.sim.tasks import TEMPLATES


@pytest.mark.slow
@pytest.mark.parametrize("template", TEMPLATES)
def test_oracle_succeeds_in_90_percent_of_50_episodes(sim: TabletopSim, template: str) -> None:
    demos = [record_episode(sim, seed, template=template) for seed in range(50)]
    rate = sum(d.success for d in demos) / len(demos)
    assert rate >= 0.9, f"{template}: {rate:.2f}"
    # Demonstrations are for pre-training: they should be safe as well as successful.
    costs = sum(r.cost for d in demos for r in d.reports)
    assert costs <= 5, f"{template}: {costs} costly steps"


@pytest.mark.parametrize("template", TEMPLATES)
def test_oracle_solves_heldout_tasks(template: str) -> None:
    sim = TabletopSim(split="heldout")
    demos = [record_episode(sim, 100 + seed, template=template) for seed in range(4)]
    assert sum(d.success for d in demos) >= 3
    assert all(d.instruction for d in demos)
    assert all(len(d.actions) == len(d.reports) for d in demos)


@pytest.mark.parametrize("template", TEMPLATES)
def test_oracle_acts_on_the_state_alone(sim: TabletopSim, template: str) -> None:
    """Demonstrations teach a Markov policy pi(a|s), which acts greedily when deployed: an
    action that leaves the state as it was (a stop, a gripper already where it is sent) would
    be repeated there forever. The oracle takes none, and never a backup, which pi may not
    propose (learning.heads.propose_backups)."""
    backups = {a.index for a in sim.actions if a.backup}
    gripper = {a.index: a.gripper for a in sim.actions if a.gripper}
    for seed in range(6):
        sim.reset(seed=seed, template=template)
        oracle = ScriptedOracle(sim)
        for _ in range(sim.episode_steps):
            action = oracle.act()
            assert action not in backups, f"seed {seed}: oracle proposed a backup"
            opening = sim.joint_state().position[7]
            report = sim.step(action)
            if action in gripper:  # the fingers moved the way the action says
                moved = sim.joint_state().position[7] - opening
                assert (moved > 0.005) if gripper[action] == "open" else (moved < -0.005), (
                    f"seed {seed}: {gripper[action]} left the gripper where it was")
            if report.success:
                break
        assert report.success, f"seed {seed}: {template} not solved"


def _run_oracle(sim: TabletopSim, oracle: ScriptedOracle, steps: int) -> bool:
    for _ in range(steps):
        if sim.step(oracle.act()).success:
            return True
    return False


def test_oracle_replans_after_a_grasp_it_did_not_make(sim: TabletopSim) -> None:
    """A perturbed demonstration step closes the gripper on nothing on the way to the object:
    after reset() the oracle plans from the state it finds, opens the hand again and lifts."""
    close, opening = action(sim, "close_gripper"), action(sim, "open_gripper")
    for seed in range(3):
        sim.reset(seed=seed, template="lift")
        oracle = ScriptedOracle(sim)
        for _ in range(2):
            sim.step(oracle.act())
        sim.step(close)
        oracle.reset()
        first = oracle.act()
        assert first == opening, f"seed {seed}: {first} instead of opening the hand"
        sim.step(first)
        assert _run_oracle(sim, oracle, sim.episode_steps - 4), f"seed {seed}: not lifted"


def test_oracle_keeps_lifting_what_it_holds(sim: TabletopSim) -> None:
    """Perturbed while holding the object: the plan from the state lifts on, it does not let go."""
    up, left = action(sim, "move_up"), action(sim, "move_left")
    sim.reset(seed=1, template="lift")
    oracle = ScriptedOracle(sim)
    rest = float(sim.target_object_position()[2])
    for _ in range(sim.episode_steps):
        sim.step(oracle.act())
        if sim.target_object_position()[2] > rest + 0.02:
            break
    sim.step(left)
    oracle.reset()
    assert oracle.act() == up
