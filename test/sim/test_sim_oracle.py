"""The scripted oracle solves every template: each task is solvable with the action set."""

from __future__ import annotations

import pytest

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
