"""The harness end to end on the `test` preset (real MuJoCo, real tiny open_clip ViT, real shield),
the zero-shot baseline's lack of training, the memory-budget skip, and the shield gate."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from safari_ros.config import load_config
from safari_ros.evaluation import cli, runner
from safari_ros.evaluation.loop import ShieldGate
from safari_ros.evaluation.report import aggregate
from safari_ros.evaluation.settings import RunConfig, apply_overrides, build_plan
from safari_ros.evaluation.stats import mean_ci
from safari_ros.sim import COST_SOURCES, TabletopSim

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def test_plan():
    """The `test` preset's plan."""
    return build_plan("test")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, test_plan) -> Path:
    """One real run of `safari_evaluate --preset test` into a fresh folder."""
    out = tmp_path_factory.mktemp("eval") / "results"
    assert cli.main(["--preset", "test", "--out", str(out), "--quiet"]) == 0
    return out


def _run(plan, name: str, seed: int = 0) -> RunConfig:
    return next(r for r in plan.runs if r.name == name and r.seed == seed)


def test_end_to_end_writes_table_plots_json(evaluated: Path, test_plan) -> None:
    report = (evaluated / "report.md").read_text()
    assert "random-initialised" in report  # the weights used are stated
    for name in test_plan.names():
        assert f"| {name} | 2 |" in report, name
    for png in ("methods_success", "methods_cumulative_cost", "ablations_success",
                "ablations_cumulative_cost"):
        data = (evaluated / f"{png}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    summary = json.loads((evaluated / "summary.json").read_text())
    assert {r["status"] for r in summary["runs"]} == {"ok"}
    for rc in test_plan.runs:
        run_dir = evaluated / "runs" / rc.name / f"seed{rc.seed}"
        assert yaml.safe_load((run_dir / "config.yaml").read_text()) == rc.resolved
        metrics = json.loads((run_dir / "metrics.json").read_text())
        proto = rc.resolved["protocol"]
        assert len(metrics["train"]) == proto["train_episodes"]
        assert {s: len(v) for s, v in metrics["deploy"].items()} == {
            "train": proto["eval_episodes"], "heldout": proto["eval_episodes"]}
        cum = sum(e["cost"] for e in metrics["train"])
        assert metrics["metrics"]["train_cost_cumulative"] == cum
        for e in metrics["train"]:  # a costly step names at least one source, each at most once
            fired = e["cost_sources"]
            assert set(fired) <= set(COST_SOURCES)
            assert (sum(fired.values()) > 0) == (e["cost"] > 0)
            assert all(0 < n <= e["cost"] for n in fired.values())
        for name in COST_SOURCES:
            assert metrics["metrics"][f"train_violations_{name}"] == sum(
                e["cost_sources"].get(name, 0) for e in metrics["train"])
        learns = rc.resolved["method"]["policy"] == "learned"
        assert (metrics["metrics"]["updates"] > 0) == learns
        assert all((e["lagrange"] is not None) == learns for e in metrics["train"])


def test_report_cells_are_the_mean_and_interval_of_the_seeds(evaluated: Path) -> None:
    summary = json.loads((evaluated / "summary.json").read_text())
    per_seed = [r["metrics"]["wall_clock_s"] for r in summary["runs"] if r["name"] == "scapo"]
    agg = summary["aggregates"]["scapo"]["metrics"]["wall_clock_s"]
    ci = mean_ci(per_seed)
    assert (agg["mean"], agg["low"], agg["high"], agg["n"]) == pytest.approx(
        (ci.mean, ci.low, ci.high, 2))
    assert ci.format(1) in (evaluated / "report.md").read_text()


def test_zero_shot_takes_no_gradient_step(monkeypatch, tmp_path, test_plan) -> None:
    built, steps = [], []
    original_build, original_step = runner.build_method_model, torch.optim.Adam.step

    def build(*args, **kwargs):
        model = original_build(*args, **kwargs)
        built.append((model, copy.deepcopy(model.state_dict())))
        return model

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(runner, "build_method_model", build)
    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    result = runner.run_one(_run(test_plan, "zero_shot"), tmp_path, CPU, progress=False)
    assert result["status"] == "ok" and result["metrics"]["updates"] == 0
    assert steps == []
    model, before = built[-1]
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    # the counter does see SCAPO's steps (so its silence above means something)
    runner.run_one(_run(test_plan, "scapo"), tmp_path, CPU, progress=False)
    assert steps


def test_full_finetuning_is_skipped_over_the_memory_budget(tmp_path, test_plan) -> None:
    rc = _run(test_plan, "full_finetune")
    tight = apply_overrides(rc.resolved, {"protocol.memory_budget_mb": 0.5})
    result = runner.run_one(RunConfig(rc.name, rc.group, 0, tight), tmp_path, CPU, progress=False)
    assert result["status"] == "skipped"
    assert "exceeds the budget" in result["reason"]
    assert result["memory_estimate_mb"] > 0.5
    assert aggregate([result])["full_finetune"]["not_ok"] == {0: f"skipped: {result['reason']}"}
    saved = json.loads((tmp_path / "runs/full_finetune/seed0/metrics.json").read_text())
    assert saved["status"] == "skipped"


@pytest.fixture
def sim_cfg():
    """A private copy of the repository config."""
    return copy.deepcopy(load_config())


def test_shield_gate_is_the_real_shield(sim_cfg) -> None:
    sim = TabletopSim(sim_cfg)
    up = next(a.index for a in sim.actions if a.name == "move_up")
    stop = next(a.index for a in sim.actions if a.name == "stop")
    setting = {"enabled": True, "learned_check": True, "learned_critic": "c"}
    gate = ShieldGate(sim_cfg, setting, gamma=0.95, n_envs=1)
    n_actions = len(sim.actions)
    risky = np.zeros(n_actions)
    risky[up] = 0.9  # C(s, move_up) above tau_safe = 0.5
    # The learned check's refusal is not a hard-limit refusal (nothing to learn as a cost).
    assert gate.decide(0, sim, up, risky) == (stop, True, False)
    # hard limits: move up until the next step would leave the workspace; the shield refuses it
    safe = np.zeros(n_actions)
    executed = []
    for _ in range(20):
        action, intervened, hard = gate.decide(0, sim, up, safe)
        executed.append(action)
        sim.step(action)
        if intervened:
            break
    assert executed[-1] == stop and executed[:-1] == [up] * (len(executed) - 1)
    assert hard, "a workspace refusal is a hard-limit refusal"
    top = sim_cfg["safety"]["workspace"]["max"][2]
    assert sim.ee_position()[2] <= top
    # without the shield the same proposal goes through
    off = ShieldGate(sim_cfg, setting | {"enabled": False}, gamma=0.95, n_envs=1)
    assert off.decide(0, sim, up, risky) == (up, False, False)
    sim.close()


def test_learned_rows_per_critic_design(sim_cfg) -> None:
    from safari_ros.core.heads import HeadOutputs

    b, a = 2, len(sim_cfg["actions"]["set"])
    logits = torch.full((b, a), -2.0)
    logits[0, 3] = 2.0
    z = torch.zeros(b, a)
    out = HeadOutputs(torch.zeros(b, 4), torch.zeros(a, 4), z, z, z, z, logits,
                      torch.tensor([4.0, 30.0]))  # V_C: (1 - 0.95) * V_C = 0.2 and 1.5 -> 1
    setting = {"enabled": True, "learned_check": True}
    rows = {c: ShieldGate(sim_cfg, setting | {"learned_critic": c}, 0.95, 1).learned_rows(out, b, a)
            for c in ("c", "v_c", "both")}
    c = torch.sigmoid(logits).numpy()
    np.testing.assert_allclose(rows["c"], c)
    np.testing.assert_allclose(rows["v_c"], [[0.2] * a, [1.0] * a])
    np.testing.assert_allclose(rows["both"], np.maximum(c, rows["v_c"]))
    off = ShieldGate(sim_cfg, setting | {"learned_critic": "c", "learned_check": False}, 0.95, 1)
    assert not off.learned_rows(out, b, a).any()
