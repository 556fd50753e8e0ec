"""Pre-training on oracle demonstrations: learning, the feature cache, determinism, resume and
bad input, through the safari_pretrain command line."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from conftest import MODEL_CONFIGS
from safetensors.torch import load_file

from safari_ros.bags import CorruptBag, TopicMap
from safari_ros.config import load_config
from safari_ros.core import ScapoLearner, build_model, load_checkpoint, validate_checkpoint
from safari_ros.pretrain import TrainSettings, load_bag_features, run_pretrain
from safari_ros.pretrain.cli import main
from safari_ros.pretrain.features import (
    DemonstrationSampler,
    load_demonstrations,
    monte_carlo_returns,
    next_rows,
)
from safari_ros.pretrain.train import warm_up_heads


def train(config_path, bags, out, cache, *extra):
    """Run `safari_pretrain train` in this process; returns (exit status, report or None)."""
    status = main(["train", *map(str, bags), "--config", str(config_path), "--model-config-dir",
                   str(MODEL_CONFIGS), "--out", str(out), "--cache-dir", str(cache),
                   "--batch-size", "32", "--heldout-fraction", "0.25", "--no-progress",
                   *map(str, extra)])
    report = out / "pretrain_report.json"
    return status, json.loads(report.read_text()) if report.exists() else None


def weights(run_dir):
    return load_file(str(run_dir / "adapters.safetensors"))


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretraining_learns_actions_and_costs(config_path, demo_bag, tmp_path):
    # a higher learning rate than the config's 3e-4: a few hundred updates on a small data set
    status, report = train(config_path, [demo_bag], tmp_path / "run", tmp_path / "cache",
                           "--epochs", "30", "--plot", "--set", "learning.pretrain.lr=0.001")
    assert status == 0
    held = report["heldout"]
    assert held["action_accuracy"] > 3 * held["chance_accuracy"]  # 10 actions: chance 0.1
    assert held["constraint_auroc"] > 0.8
    assert 0.0 <= held["constraint_ece"] < 0.2
    assert held["costly_steps"] >= 10 and report["data"]["heldout_episodes"] == 9
    # accuracy is the recalls' average weighted by how often each action was demonstrated
    recall = held["action_recall"]
    assert set(recall) <= set(report["action_names"]) and len(recall) >= 3
    assert min(recall.values()) <= held["action_accuracy"] <= max(recall.values())
    fit = report["train_fit"]  # as many training steps as held-out ones
    assert fit["steps"] == min(report["data"]["train_steps"], held["steps"])
    assert fit["action_accuracy"] > 3 * fit["chance_accuracy"]
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 0
    history = report["history"]
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    # what the policy node does with it: validate, then load
    model = build_model(load_config(config_path))
    ckpt = tmp_path / "run" / "adapters.safetensors"
    info = validate_checkpoint(ckpt, model)
    assert info.sha256 == report["checkpoint"]["sha256"]
    load_checkpoint(ckpt, model)


def test_feature_cache_is_reused_and_identical(config_path, demo_bag, tmp_path):
    cache = tmp_path / "cache"
    _, first = train(config_path, [demo_bag], tmp_path / "a", cache, "--epochs", "1")
    _, second = train(config_path, [demo_bag], tmp_path / "b", cache, "--epochs", "1")
    assert first["feature_cache"]["misses"] == [str(demo_bag)]
    assert first["feature_cache"]["steps_computed"] == first["data"]["steps"] > 0
    assert second["feature_cache"]["hits"] == [str(demo_bag)]
    assert second["feature_cache"]["steps_computed"] == 0
    assert first["feature_cache"]["files"] == second["feature_cache"]["files"]

    model = build_model(load_config(config_path))
    fresh, stats = load_bag_features(model, [demo_bag], TopicMap.load(),
                                     cache_dir=tmp_path / "other")
    cached, hit = load_bag_features(model, [demo_bag], TopicMap.load(), cache_dir=cache)
    assert stats.misses and hit.hits and not hit.misses
    assert cached.tokens.dtype == torch.float16
    for name, tensor in fresh.tensors().items():
        torch.testing.assert_close(tensor, getattr(cached, name), rtol=0, atol=0, equal_nan=True,
                                   msg=name)  # NaN: no grounding label
    # a different preprocessing setting is a different key: no stale hit
    _, other = load_bag_features(model, [demo_bag], TopicMap.load(), cache_dir=cache,
                                 skip_bad=True)
    assert other.misses == [str(demo_bag)]


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def warm_up(model, data) -> dict:
    """300 warm-up updates of 32 steps on the CPU."""
    return warm_up_heads(model, data, steps=300, batch_size=32, seed=0, device=torch.device("cpu"))


def test_heads_warm_up_alone_before_the_adapters_join(config_path, demo_bag, tmp_path):
    torch.manual_seed(0)
    model = build_model(load_config(config_path))
    data, _ = load_bag_features(model, [demo_bag], TopicMap.load(), cache_dir=tmp_path / "c")
    batch = data.batch()
    fit = batch.success > 0.5  # the steps L_BC learns from

    def accuracy() -> float:
        with torch.no_grad():
            chosen = model.suffix_and_heads(batch.state).policy_logits.argmax(1)
        return float((chosen == batch.action)[fit].float().mean())

    adapters, heads = snapshot(model.adapters), snapshot(model.heads)
    before = accuracy()
    stats = warm_up(model, data)
    after = accuracy()
    print(f"BC accuracy on the fitted steps: {before:.2f} -> {after:.2f}, loss "
          f"{stats['loss_first']:.2f} -> {stats['loss_last']:.2f}")
    assert same(adapters, model.adapters.state_dict())  # the adapters wait
    assert not same(heads, model.heads.state_dict())
    assert stats["steps"] == 300 and stats["loss_last"] < 0.9 * stats["loss_first"]
    assert after > before + 0.3


def test_next_rows_follow_each_episode_and_stop_at_its_end(config_path, demo_bag, tmp_path):
    model = build_model(load_config(config_path))
    data, _ = load_bag_features(model, [demo_bag], TopicMap.load(), cache_dir=tmp_path / "c")
    nxt = next_rows(data)
    rows = torch.arange(len(data))
    inside = (nxt != rows) & (nxt >= 0)
    assert inside.any() and torch.equal(nxt[inside], rows[inside] + 1)
    assert torch.equal(data.episode[nxt[inside]], data.episode[inside])
    last = ~inside  # an episode's last step: itself when it ended (done), else -1
    assert int(last.sum()) == int(data.episode.unique().numel())
    assert torch.equal(nxt[last] == rows[last], data.done[last] > 0.5)
    assert (nxt[last & (data.done < 0.5)] == -1).all()


def test_demonstration_sampler_draws_whole_transitions_and_marks_expert_steps(
        config_path, demo_bag, tmp_path):
    model = build_model(load_config(config_path))
    data, _ = load_bag_features(model, [demo_bag], TopicMap.load(), cache_dir=tmp_path / "c")
    sampler = DemonstrationSampler(data, seed=3)
    nxt = next_rows(data)
    assert len(sampler) == int((nxt >= 0).sum())
    batch = sampler.sample(400)
    assert len(batch) == 400 and batch.state.tokens.dtype == torch.float32
    # each draw is a row of the data with a next state: its s' the row next_rows names, its
    # action, cost and done that row's (a still arm repeats a frame: any row with the same
    # tokens may be the one drawn)
    flat = data.tokens.float().flatten(1)
    expert = ((data.action == data.proposed) & (data.success > 0.5)).float()  # L_BC's weight
    same = torch.cdist(batch.state.tokens.flatten(1), flat,
                       compute_mode="donot_use_mm_for_euclid_dist") < 1e-4
    for k in range(len(batch)):
        rows = [int(r) for r in torch.nonzero(same[k]).squeeze(1) if nxt[r] >= 0]
        assert any(
            torch.equal(batch.next_state.tokens[k].flatten(), flat[nxt[r]])
            and int(batch.action[k]) == int(data.action[r]) and batch.done[k] == data.done[r]
            and batch.cost[k] == data.cost[r] and batch.success[k] == expert[r]
            for r in rows), k
    assert 0 < float(batch.success.mean()) < 1  # the bag has perturbed and failed steps
    again, cached = load_demonstrations(model, [demo_bag], seed=3, cache_dir=tmp_path / "c")
    assert cached and torch.equal(again.sample(400).action, batch.action)  # seeded, from cache
    with pytest.raises(FileNotFoundError, match=r"demonstrations bag .*nowhere not found"):
        load_demonstrations(model, [demo_bag, tmp_path / "nowhere"], cache_dir=tmp_path / "c")


def test_demonstration_transitions_come_once_each_with_their_return(config_path, demo_bag,
                                                                   tmp_path):
    model = build_model(load_config(config_path))
    data, _ = load_bag_features(model, [demo_bag], TopicMap.load(), cache_dir=tmp_path / "c")
    sampler = DemonstrationSampler(data, seed=3)
    gamma = 0.9
    returns = monte_carlo_returns(data, gamma)
    for e in data.episode.unique():  # by hand: sum_k gamma^k r_{t+k} to the episode's end
        rows = torch.nonzero(data.episode == e).squeeze(1).tolist()
        rewards = [float(data.reward[r]) for r in rows]
        for k, r in enumerate(rows):
            hand = sum(v * gamma**j for j, v in enumerate(rewards[k:]))
            assert float(returns[r]) == pytest.approx(hand, abs=1e-5)
    chunks = list(sampler.transitions(gamma, chunk=50))
    assert sum(len(b) for b, _ in chunks) == len(sampler) and len(chunks) > 1
    actions = torch.cat([b.action for b, _ in chunks])
    assert torch.equal(actions, data.action[sampler.rows])  # every row once, in order
    assert torch.equal(torch.cat([g for _, g in chunks]), returns[sampler.rows])
    assert torch.equal(chunks[0][0].next_state.tokens, data.tokens[sampler.next[:50]].float())


def test_critic_warm_up_on_demonstrations_ranks_the_demonstrated_actions_first(
        config_path, demo_bag, tmp_path):
    torch.manual_seed(0)
    model = build_model(load_config(config_path))
    data, _ = load_bag_features(model, [demo_bag], TopicMap.load(), cache_dir=tmp_path / "c")
    expert = torch.nonzero((data.action == data.proposed) & (data.success > 0.5)).squeeze(1)
    batch = data.batch(expert)
    learner = ScapoLearner(model, model.hp.scapo)

    def outputs() -> tuple[float, torch.Tensor]:
        """Mean of Q_r at the demonstrated action minus Q_r's mean over the others; pi."""
        with torch.no_grad():
            out = model.suffix_and_heads(batch.state)
        q = out.q_reward
        at = q.gather(1, batch.action[:, None]).squeeze(1)
        return float((at - (q.sum(1) - at) / (q.shape[1] - 1)).mean()), out.policy_probs

    before, pi_before = outputs()
    figures = learner.warm_up_critics(
        DemonstrationSampler(data).transitions(model.hp.scapo.gamma, chunk=64), 1500)
    after, pi_after = outputs()
    print(f"Q_r margin of the demonstrated action: {before:.3f} -> {after:.3f}; {figures}")
    assert after > 0.3 and after > before + 0.3
    assert torch.equal(pi_before, pi_after)  # the critics only
    assert figures["transitions"] == int((next_rows(data) >= 0).sum())
    assert all(math.isfinite(v) for v in figures.values())


def test_same_seed_same_weights_and_resume_continues_exactly(config_path, demo_bag, tmp_path):
    cache = tmp_path / "cache"
    # with the heads' warm-up, which a resumed run must not repeat
    args = ("--epochs", "3", "--seed", "5", "--set", "learning.pretrain.head_warmup_steps=20")
    status, first = train(config_path, [demo_bag], tmp_path / "a", cache, *args)
    assert status == 0 and first["head_warmup"]["steps"] == 20
    assert train(config_path, [demo_bag], tmp_path / "b", cache, *args)[0] == 0
    assert same(weights(tmp_path / "a"), weights(tmp_path / "b"))

    status, _ = train(config_path, [demo_bag], tmp_path / "c", cache, *args,
                      "--stop-after-epochs", "1")
    assert status == 1 and not (tmp_path / "c" / "adapters.safetensors").exists()
    assert (tmp_path / "c" / "pretrain_state.pt").exists()
    status, report = train(config_path, [demo_bag], tmp_path / "c", cache, *args, "--resume")
    assert status == 0 and report["resumed_from_epoch"] == 1 and report["head_warmup"] is None
    assert same(weights(tmp_path / "a"), weights(tmp_path / "c"))

    train(config_path, [demo_bag], tmp_path / "d", cache, "--epochs", "3", "--seed", "6")
    assert not same(weights(tmp_path / "a"), weights(tmp_path / "d"))


def cut_bag(src, dst, keep_share):
    """A copy of the bag whose .mcap file ends early (a crashed recorder)."""
    shutil.copytree(src, dst)
    mcap = next(dst.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(len(data) * keep_share)])
    return dst


def test_truncated_bag_is_named_or_skipped(config_path, demo_bag, tmp_path, capsys):
    bad = cut_bag(demo_bag, tmp_path / "cut", 0.5)
    status, _ = train(config_path, [bad], tmp_path / "strict", tmp_path / "cache",
                      "--epochs", "1")
    assert status == 2
    assert str(bad) in capsys.readouterr().err

    status, report = train(config_path, [bad], tmp_path / "lenient", tmp_path / "cache",
                           "--epochs", "1", "--skip-bad")
    assert status == 0
    assert report["data"]["skipped"]["truncated"] == 1
    assert report["data"]["skipped"]["lost_messages"] > 0
    assert 0 < report["data"]["steps"] < 941 * 0.6

    with pytest.raises(CorruptBag, match=str(bad)):
        run_pretrain(load_config(config_path), [bad], tmp_path / "api",
                     TrainSettings(epochs=1, cache_dir=tmp_path / "cache2", progress=False))
