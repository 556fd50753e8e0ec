"""The main job's deployment evaluation (issue 12): its intervals against published values, its
seeds (derived as the environment derives them, disjoint from the other phases) and the
evaluation itself on a tiny stack: v1 and final on the same seeds, both splits, in the report."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from core.core_helpers import tiny_learning_dict

from safari_ros.config import load_config
from safari_ros.core.checkpoint import save_checkpoint
from safari_ros.core.model import build_model
from safari_ros.evaluation.deployment import (
    DeploymentSeeds,
    check_disjoint,
    check_targets,
    evaluate_deployment,
    layout_seed,
)
from safari_ros.evaluation.loop import make_envs
from safari_ros.evaluation.stats import (
    newcombe_paired_difference,
    newcombe_unpaired_difference,
    wilson,
)
from safari_ros.report import deployment_table, moving_mean, success_band, write_report
from safari_ros.sim import TabletopSim

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------- intervals
def test_wilson_matches_newcombe_1998_and_stays_in_0_1() -> None:
    # Newcombe (1998), Stat Med 17:857, table I: 81/263 -> 0.2553, 0.3662; 15/148 -> 0.0624,
    # 0.1605; 0/20 -> 0, 0.1611.
    for (x, n), (low, high) in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                                (0, 20): (0.0, 0.1611)}.items():
        ci = wilson(x, n)
        assert (ci.low, ci.high) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))
        assert ci.mean == x / n and ci.contains(ci.mean)
    full = wilson(20, 20)
    assert full.high == 1.0 and full.low == pytest.approx(1 - 0.1611, abs=5e-5)
    assert math.isnan(wilson(0, 0).mean)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_newcombe_differences_match_published_examples() -> None:
    # Unpaired, Newcombe (1998) Stat Med 17:873, method 10: 56/70 - 48/80 -> 0.0524, 0.3339.
    ci = newcombe_unpaired_difference(56, 70, 48, 80)
    assert ci.mean == pytest.approx(0.2)
    assert (ci.low, ci.high) == (pytest.approx(0.0524, abs=5e-5), pytest.approx(0.3339, abs=5e-5))
    # Paired, Fagerland, Lydersen & Laake (2017), ch. 8, Cavo et al. (2012): table
    # [[59, 6], [16, 80]] -> -0.0621 (95% CI -0.1186 to -0.0046).
    a = [True] * 65 + [False] * 96  # rows: 59 + 6 successes
    b = [True] * 59 + [False] * 6 + [True] * 16 + [False] * 80  # columns: 59 + 16
    ci = newcombe_paired_difference(a, b)
    assert ci.mean == pytest.approx(-0.0621, abs=5e-5) and ci.n == 161
    assert (ci.low, ci.high) == (pytest.approx(-0.1186, abs=5e-5),
                                 pytest.approx(-0.0046, abs=5e-5))
    # Pairing matters: outcomes that agree on most seeds give a narrower interval than the
    # same rates from independent samples.
    a = [True] * 12 + [False] * 8
    b = [True] * 6 + [False] * 14
    paired = newcombe_paired_difference(a, b)
    unpaired = newcombe_unpaired_difference(12, 20, 6, 20)
    assert paired.mean == unpaired.mean == pytest.approx(0.3)
    assert paired.high - paired.low < unpaired.high - unpaired.low
    assert paired.contains(0.3) and paired.low > 0
    same = newcombe_paired_difference([True, False] * 10, [True, False] * 10)
    assert same.mean == 0 and same.low < 0 < same.high
    with pytest.raises(ValueError):
        newcombe_paired_difference([True], [True, False])


# ----------------------------------------------------------------------------------- seeds
@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory) -> dict:
    """The repository's config with the tiny test ViT, a 64 px camera and 8-step episodes."""
    cfg = copy.deepcopy(load_config())
    cfg["learning"] = tiny_learning_dict(model_config_dir=str(REPO / "test" / "core" /
                                                              "model_configs"))
    cfg["sim"]["camera"].update(width=64, height=64)
    cfg["sim"]["episode_steps"] = 8
    return cfg


def test_layout_seed_is_the_scene_the_environment_simulates(tiny_cfg) -> None:
    env = make_envs(tiny_cfg, "heldout", 1)[0]
    sim = TabletopSim(tiny_cfg, split="heldout")
    try:
        for env_seed in (1_000_000_000, 1_000_000_007):
            obs, info = env.reset(seed=env_seed)
            sim.reset(seed=layout_seed(env_seed))
            assert info["instruction"] == sim.instruction
            assert np.array_equal(obs["rgb"], sim.render_rgbd()[0])
    finally:
        env.close()
        sim.close()


def test_deployment_seeds_must_be_disjoint_from_the_other_phases() -> None:
    from safari_ros import tabletop_run

    seeds = DeploymentSeeds(1000, 5)
    assert seeds.env_seeds == [1000, 1001, 1002, 1003, 1004]
    check_disjoint(seeds, {"online": range(0, 1000), "demos": {0}})
    with pytest.raises(ValueError, match="online"):
        check_disjoint(seeds, {"online": range(0, 1001)})
    with pytest.raises(ValueError, match="demos"):  # a layout seed counts as well
        check_disjoint(seeds, {"demos": {seeds.layout_seeds[3]}})
    # The main job's own seeds, as configured, pass (it checks them before anything runs).
    cfg = load_config()
    run = cfg["run"]
    used = tabletop_run.online_and_demo_seeds(cfg, int(run["episodes"]), int(run["demo_seed"]))
    check_disjoint(DeploymentSeeds(int(run["deploy_seed_base"]), int(run["deploy_episodes"])),
                   used)
    # each process recording demonstrations has a generator seed of its own
    seed, workers = int(run["demo_seed"]), int(run["demo_workers"])
    assert used["demonstrations"] == set(range(seed, seed + workers)) and workers > 1


# ------------------------------------------------------------------------------ evaluation
@pytest.fixture(scope="module")
def deployed(tiny_cfg, tmp_path_factory) -> dict:
    """v1 (heads seeded 0) and 'final' (seeded 1: other weights) deployed on 3 seeds per split,
    two environments at a time (so one batch is partial)."""
    folder = tmp_path_factory.mktemp("deploy")
    paths = {}
    for label, seed, version in (("v1", 0, 1), ("final", 1, 7)):
        torch.manual_seed(seed)
        paths[label] = str(save_checkpoint(folder / f"{label}.safetensors",
                                           build_model(tiny_cfg), version, 10 * version).path)
    threads = torch.get_num_threads()
    # The tiny model's matrices are too small to split: a second thread only waits, and on a
    # busy machine that waiting made this fixture 4x slower (42 s vs 11 s, measured).
    torch.set_num_threads(1)
    try:
        section = evaluate_deployment(tiny_cfg, paths, DeploymentSeeds(5_000, 3), num_envs=2)
    finally:
        torch.set_num_threads(threads)
    check_targets(section, {"train": 0.7, "heldout": 0.5})
    return section


def test_v1_and_final_play_the_same_seeds_on_both_splits(deployed) -> None:
    assert deployed["protocol"]["splits"] == ["train", "heldout"]
    assert set(deployed["splits"]) == {"train", "heldout"}
    assert [deployed["checkpoints"][k]["version"] for k in ("v1", "final")] == [1, 7]
    for split, by_label in deployed["splits"].items():
        scenes = {}
        for label in ("v1", "final"):
            episodes = by_label[label]["episodes"]
            assert [e["env_seed"] for e in episodes] == [5_000, 5_001, 5_002], (split, label)
            assert [e["episode"] for e in episodes] == [0, 1, 2]
            assert all(e["layout_seed"] == layout_seed(e["env_seed"]) for e in episodes)
            assert all(1 <= e["steps"] <= 8 for e in episodes)
            scenes[label] = [e["instruction"] for e in episodes]  # one scene per seed
        assert scenes["v1"] == scenes["final"], split
    assert deployed["env_steps"] == sum(
        e["steps"] for by_label in deployed["splits"].values()
        for label in ("v1", "final") for e in by_label[label]["episodes"])


def test_intervals_contain_their_point_estimates(deployed) -> None:
    for by_label in deployed["splits"].values():
        for label in ("v1", "final"):
            s = by_label[label]
            episodes = s["episodes"]
            assert s["success"]["mean"] == np.mean([e["success"] for e in episodes])
            assert s["cost_per_episode"]["mean"] == pytest.approx(
                np.mean([e["cost"] for e in episodes]))
            assert s["interventions_per_episode"]["mean"] == pytest.approx(
                np.mean([e["interventions"] for e in episodes]))
            for key in ("success", "cost_per_episode", "interventions_per_episode"):
                ci = s[key]
                assert ci["n"] == 3 and ci["low"] <= ci["mean"] <= ci["high"], key
            assert 0.0 <= s["success"]["low"] and s["success"]["high"] <= 1.0
        gain = by_label["gain"]
        assert gain["mean"] == pytest.approx(by_label["final"]["success"]["mean"]
                                             - by_label["v1"]["success"]["mean"])
        assert gain["low"] <= gain["mean"] <= gain["high"]


def test_behaviour_says_what_the_policy_proposed_and_what_the_shield_refused(deployed) -> None:
    for by_label in deployed["splits"].values():
        for label in ("v1", "final"):
            s = by_label[label]
            episodes, b = s["episodes"], s["behaviour"]
            for e in episodes:  # every step proposed one action; refusals split by kind
                assert sum(e["proposed"].values()) == e["steps"]
                assert 0 <= e["refused_hard"] <= e["interventions"]
            assert sum(b["proposed_share"].values()) == pytest.approx(1.0)
            shares = list(b["proposed_share"].values())
            assert shares == sorted(shares, reverse=True)
            assert b["refused_hard_per_episode"]["mean"] + b["refused_learned_per_episode"][
                "mean"] == pytest.approx(s["interventions_per_episode"]["mean"])
            assert b["motion_share"]["mean"] == pytest.approx(
                np.mean([e["motion_share"] for e in episodes]))
    table = deployment_table(deployed)
    assert "refused: hard limit" in table
    top = next(iter(deployed["splits"]["train"]["final"]["behaviour"]["proposed_share"]))
    assert any(line.startswith(f"{'train':8} {'final':9}") and top in line
               for line in table.splitlines())


def test_section_goes_into_report_json_png_and_table(deployed, tmp_path) -> None:
    rows = [{"episode": 1, "success": False, "return": -0.5, "cost": 0.0, "steps": 8,
             "interventions": 2, "cumulative_violations": 0, "lagrange_multiplier": 0.0,
             "updates": 4, "policy_entropy": 2.0}]
    paths = write_report(rows, tmp_path, {"backbone": "tiny"}, deployed)
    report = json.loads(paths["json"].read_text())
    assert set(report["deployment"]["splits"]) == {"train", "heldout"}
    assert set(report["deployment"]["targets"]) == {
        f"{s}_{t}" for s in ("train", "heldout") for t in ("success", "cost", "gain")}
    assert paths["png"].read_bytes().startswith(b"\x89PNG")
    table = deployment_table(deployed)
    for split in ("train", "heldout"):
        for label in ("v1", "final", "gain"):
            assert any(line.startswith(f"{split:8} {label:9}") for line in table.splitlines())
    assert "target train_success" in table and "s each" in table


def test_success_band_is_the_wilson_interval_of_the_trailing_window() -> None:
    successes = [False, False, True, True, True, False, False]
    low, high = success_band(successes, window=3)
    rates = moving_mean([float(s) for s in successes], window=3)
    for i, rate in enumerate(rates):
        recent = successes[max(0, i - 2):i + 1]
        ci = wilson(sum(recent), len(recent))
        assert (low[i], high[i]) == (ci.low, ci.high)
        assert 0.0 <= low[i] <= rate <= high[i] <= 1.0
    assert low[0] == 0.0 and high[0] > 0.5  # one failure says little: the band shows it


def test_a_greedy_policy_does_not_repeat_a_refused_proposal_in_the_same_state(tiny_cfg) -> None:
    """The harness's loop acts as policy_node does (core/refusals.py): pi prefers move_up, which
    C(s, a) refuses in every state, then move_down. Greedy, it alternates: move_up refused (a
    stop, the arm stays), move_down runs (the arm moves, the refusal is forgotten), and so on;
    without the memory it would propose move_up on all 8 steps."""
    from safari_ros.core.heads import HeadOutputs
    from safari_ros.evaluation.deployment import STACK_SHIELD
    from safari_ros.evaluation.loop import OnlineLoop, ShieldGate
    from safari_ros.evaluation.models import perceive

    model = build_model(tiny_cfg)
    names = model.action_names
    up, down = names.index("move_up"), names.index("move_down")
    pi = torch.full((len(names),), 0.01)
    pi[up], pi[down] = 0.6, 0.3
    pi /= pi.sum()
    risky = torch.full((len(names),), -5.0)
    risky[up] = 5.0  # C(s, move_up) ~ 0.99 >= tau_safe

    def policy(state):
        b, a = len(state.tokens), len(names)
        z = torch.zeros(b, a)
        return pi.repeat(b, 1), HeadOutputs(torch.zeros(b, 4), torch.zeros(a, 4), z, z, z, z,
                                            risky.repeat(b, 1), torch.zeros(b))

    gate = ShieldGate(tiny_cfg, STACK_SHIELD, gamma=0.95, n_envs=1)
    loop = OnlineLoop(model, make_envs(tiny_cfg, "train", 1), gate, policy=policy,
                      perceive=lambda rgb: perceive(model, rgb), sampling=False)
    (record,) = loop.run(1, seed=6_000)
    assert record.steps == 8
    assert record.proposed == {"move_up": 4, "move_down": 4}
    assert record.interventions == 4 and record.refused_hard == 0
