"""Resolved configs: each baseline and ablation differs from SCAPO exactly in what it removes."""

from __future__ import annotations

from pathlib import Path

import pytest

from safari_ros.config import ConfigError, load_config
from safari_ros.evaluation.settings import (
    METHODS_GROUP,
    apply_overrides,
    build_plan,
    config_diff,
    flatten,
    load_evaluation_config,
)

# What each baseline removes or replaces, spelt out independently of config/evaluation.yaml.
EXPECTED_METHOD_DIFFS = {
    "full_finetune": {
        "method.vision_tower_trainable": (False, True),
        "tabletop.learning.adapters.task_layers": ([3, 4, 5], []),
        "tabletop.learning.adapters.safety_layers": ([4, 5], []),
    },
    "adapters_no_safety": {
        "method.shield.enabled": (True, False),
        "tabletop.learning.adapters.safety_layers": ([4, 5], []),
        "tabletop.learning.scapo.eta_lambda": (0.05, 0.0),
    },
    "cnn_safe_rl": {"method.encoder": ("clip", "cnn")},
    "zero_shot": {
        "method.policy": ("learned", "zero_shot"),
        "method.shield.learned_check": (True, False),
    },
}


@pytest.fixture(scope="module")
def quick_plan():
    """The quick preset's plan (resolution only; nothing runs)."""
    return build_plan("quick")


def _resolved(plan, name: str, seed: int = 0) -> dict:
    return next(r.resolved for r in plan.runs if r.name == name and r.seed == seed)


@pytest.mark.parametrize("baseline", sorted(EXPECTED_METHOD_DIFFS))
def test_baseline_differs_from_scapo_only_in_what_it_removes(quick_plan, baseline: str) -> None:
    for seed in quick_plan.seeds:
        scapo, other = _resolved(quick_plan, "scapo", seed), _resolved(quick_plan, baseline, seed)
        assert config_diff(scapo, other) == EXPECTED_METHOD_DIFFS[baseline]


def test_scapo_is_the_full_method(quick_plan) -> None:
    scapo = _resolved(quick_plan, "scapo")
    assert scapo["method"]["encoder"] == "clip" and scapo["method"]["policy"] == "learned"
    assert not scapo["method"]["vision_tower_trainable"]
    assert scapo["method"]["shield"] == {"enabled": True, "learned_check": True,
                                         "learned_critic": "c"}
    learning = scapo["tabletop"]["learning"]
    assert learning["adapters"]["task_layers"] and learning["adapters"]["safety_layers"]
    assert learning["scapo"]["eta_lambda"] > 0 and learning["scapo"]["alpha_cql"] > 0
    assert learning["scapo"]["epsilon_kl"] > 0


def test_every_ablation_changes_one_key_of_scapo(quick_plan) -> None:
    ablations = [r for r in quick_plan.runs if r.group != METHODS_GROUP and r.seed == 0]
    assert {r.group for r in ablations} == {
        "adapter_architecture", "tau_safe", "delta", "safety_critic", "exploration"}
    for run in ablations:
        diff = config_diff(_resolved(quick_plan, "scapo"), run.resolved)
        assert set(diff) == set(run.overrides) and len(diff) == 1, run.name
    names = {r.name for r in ablations}
    assert names == {"task_only", "bottleneck_4", "tau_safe_0.3", "delta_0.05", "critic_v_c",
                     "entropy_floor_0.3"}


def test_seeds_and_reference_tabletop(quick_plan) -> None:
    runs = quick_plan.runs
    assert quick_plan.seeds == [0, 1, 2]
    assert len(runs) == len(quick_plan.names()) * 3
    for r in runs:
        assert r.resolved["seed"] == r.seed
        assert r.resolved["tabletop"]["learning"]["replay"]["sampling_seed"] == r.seed
    # everything the preset does not override is config/tabletop.yaml's
    scapo = _resolved(quick_plan, "scapo")
    assert scapo["tabletop"]["safety"]["tau_safe"] == 0.5
    assert scapo["tabletop"]["sim"]["episode_steps"] == 15


def test_full_preset_replaces_bottleneck_variants() -> None:
    plan = build_plan("full", ablations=True)
    assert plan.groups["adapter_architecture"] == [
        "scapo", "task_only", "bottleneck_8", "bottleneck_64"]
    scapo = _resolved(plan, "scapo")
    # the default backbone, its weights file resolved beside the config
    backbone = scapo["tabletop"]["learning"]["backbone"]
    assert backbone["architecture"] == load_config()["learning"]["backbone"]["architecture"]
    assert Path(backbone["weights"]).is_file()


def test_cli_overrides_and_method_subset() -> None:
    plan = build_plan("test", cli_overrides={"protocol.seeds": 1,
                                             "tabletop.learning.backbone.weights": "/w.pt"},
                      methods=["zero_shot"], ablations=False)
    assert plan.names() == ["scapo", "zero_shot"]  # the reference always runs
    assert all(r.resolved["tabletop"]["learning"]["backbone"]["weights"] == "/w.pt"
               for r in plan.runs)


def test_typos_are_refused() -> None:
    with pytest.raises(ConfigError, match="tau_saef"):
        apply_overrides({"tabletop": {"safety": {"tau_safe": 0.5}}},
                        {"tabletop.safety.tau_saef": 0.3})
    with pytest.raises(ConfigError, match="unknown preset"):
        build_plan("nope")
    cfg = load_evaluation_config()
    cfg["methods"]["bad"] = {"method.shield.enabeld": False}
    with pytest.raises(ConfigError, match="enabeld"):
        build_plan("test", eval_cfg=cfg)


def test_flatten_and_diff() -> None:
    a = {"x": {"y": 1, "z": [1, 2]}, "w": {}}
    assert flatten(a) == {"x.y": 1, "x.z": [1, 2], "w": {}}
    assert config_diff(a, {"x": {"y": 2, "z": [1, 2]}}) == {"x.y": (1, 2), "w": ({}, None)}


def test_tiny_is_the_test_preset_under_safari_pretrains_name():
    tiny, test = build_plan("tiny"), build_plan("test")
    assert [(r.name, r.seed, r.resolved) for r in tiny.runs] == \
        [(r.name, r.seed, r.resolved) for r in test.runs]
