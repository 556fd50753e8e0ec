"""Replay buffer of prefix tokens, and adapter checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from core_helpers import config_actions, make_tiny_model, random_batch, tiny_hp, tiny_learning_dict
from safetensors.torch import save_file

from safari_ros.config import ActionSpec
from safari_ros.core.checkpoint import (
    CheckpointError,
    latest_checkpoint_version,
    load_checkpoint,
    nan_free,
    save_checkpoint,
    sidecar_path,
    validate_checkpoint,
    versioned_checkpoint_path,
)
from safari_ros.core.hparams import LearningConfig
from safari_ros.core.replay import ReplayBuffer, ReplayError, Transition

N_TOK, WIDTH, DEPTH, PROP, EMB = 5, 64, 16, 21, 32


def _transition(i: int, rng: np.random.Generator) -> Transition:
    def state():
        return dict(
            tokens=rng.standard_normal((N_TOK, WIDTH)).astype(np.float32),
            depth=rng.random(DEPTH).astype(np.float32),
            proprio=rng.standard_normal(PROP).astype(np.float32),
            instruction=rng.standard_normal(EMB).astype(np.float32),
        )

    s, s2 = state(), state()
    return Transition(
        **s,
        action=i % 10,
        reward=float(i),
        cost=float(i % 2),
        **{f"next_{k}": v for k, v in s2.items()},
        done=i % 7 == 6,
        success=i % 3 == 0,
        behaviour_prob=0.1,
    )


# --------------------------------------------------------------------------------- replay
def test_replay_stores_float16_tokens_and_evicts_fifo(rng):
    buf = ReplayBuffer(capacity_transitions=10, memory_limit_mb=64, store_float16=True)
    items = [_transition(i, rng) for i in range(25)]
    for t in items:
        buf.add(t)
    assert len(buf) == 10 and buf.evicted == 15 and buf.capacity == 10
    assert buf._data["tokens"].dtype == np.float16 and buf._data["depth"].dtype == np.float32
    kept = buf.batch_at(buf._order())
    assert kept.reward.tolist() == [float(i) for i in range(15, 25)]  # the newest 10, in order
    np.testing.assert_allclose(
        kept.state.tokens[0].float().numpy(), items[15].tokens, rtol=1e-3, atol=1e-3
    )


def test_replay_memory_limit_bounds_capacity_and_refuses_oversize(rng):
    t = _transition(0, rng)
    per = 2 * (N_TOK * WIDTH * 2 + EMB * 2 + (DEPTH + PROP) * 4) + 8 + 5 * 4
    buf = ReplayBuffer(capacity_transitions=10_000, memory_limit_mb=per * 4.5 / 2**20)
    buf.add(t)
    assert buf.bytes_per_transition == per
    assert buf.capacity == 4 and buf.nbytes <= buf.memory_limit_bytes
    with pytest.raises(ReplayError, match="more than memory_limit_mb"):
        ReplayBuffer(10, memory_limit_mb=100 / 2**20).add(t)


def test_replay_refuses_bad_shapes_and_non_finite(rng):
    buf = ReplayBuffer(10, 64)
    buf.add(_transition(0, rng))
    bad = _transition(1, rng)
    bad.tokens = bad.tokens[:3]
    with pytest.raises(ReplayError, match="shape"):
        buf.add(bad)
    bad = _transition(2, rng)
    bad.next_tokens[0, 0] = 1e6  # overflows float16
    with pytest.raises(ReplayError, match="non-finite"):
        buf.add(bad)


def test_replay_sampling_is_seeded(rng):
    items = [_transition(i, rng) for i in range(30)]
    a, b, c = (ReplayBuffer(100, 64, seed=s) for s in (5, 5, 6))
    for buf in (a, b, c):
        for t in items:
            buf.add(t)
    ra, rb, rc = (buf.sample(8).reward.tolist() for buf in (a, b, c))
    assert ra == rb and ra != rc
    batch = a.sample(8, device="cpu")
    assert batch.state.tokens.dtype == torch.float32 and batch.action.dtype == torch.long
    assert batch.state.tokens.shape == (8, N_TOK, WIDTH)


def test_replay_save_load_roundtrip(tmp_path, rng):
    buf = ReplayBuffer(8, 64, backbone_id="tiny@random-seed0")
    for i in range(12):
        buf.add(_transition(i, rng))
    path = buf.save(tmp_path / "replay.safetensors")
    back = ReplayBuffer.load(path, 8, 64, backbone_id="tiny@random-seed0")
    assert len(back) == 8
    x, y = buf.batch_at(buf._order()), back.batch_at(back._order())
    for name in ("reward", "cost", "done", "success", "action"):
        assert torch.equal(getattr(x, name), getattr(y, name))
    assert torch.equal(x.next_state.tokens, y.next_state.tokens)
    with pytest.raises(ReplayError, match="backbone"):
        ReplayBuffer.load(path, 8, 64, backbone_id="other")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ReplayError, match="cannot read"):
        ReplayBuffer.load(path, 8, 64)


def test_replay_feeds_the_learner(tiny_model):
    """Tokens from the real prefix go through the buffer into a SCAPO update."""
    from safari_ros.core.scapo import ScapoLearner

    batch = random_batch(tiny_model, 6)
    buf = ReplayBuffer.from_config(tiny_model.hp.replay, tiny_model.backbone_id)
    for i in range(6):
        s = {
            f: getattr(batch.state, f)[i].numpy()
            for f in ("tokens", "depth", "proprio", "instruction")
        }
        n = {f"next_{f}": getattr(batch.next_state, f)[i].numpy() for f in s}
        buf.add(Transition(**s, **n, action=int(batch.action[i]), reward=1.0, cost=0.0, done=False))
    metrics = ScapoLearner(tiny_model, tiny_model.hp.scapo).update(buf.sample(4))
    assert nan_free(metrics)


# ----------------------------------------------------------------------------- checkpoint
def _perturb(model, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.trainable_named_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


def test_checkpoint_roundtrip(tmp_path):
    a, b = make_tiny_model(seed=0), make_tiny_model(seed=1)
    _perturb(a)
    path = tmp_path / "ckpt" / "adapters.safetensors"
    info = save_checkpoint(path, a, version=3, step=120, extra={"lambda": 0.5})
    assert sidecar_path(path).read_text().split()[0] == info.sha256
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temporaries
    loaded = load_checkpoint(path, b)
    assert (loaded.version, loaded.step, loaded.extra) == (3, 120, {"lambda": 0.5})
    assert loaded.backbone_id == a.backbone_id and loaded.split_layer_k == 2
    assert list(loaded.action_names) == a.action_names
    assert loaded.config["split_layer_k"] == 2
    for (n, pa), (_, pb) in zip(
        a.trainable_named_parameters(), b.trainable_named_parameters(), strict=True
    ):
        assert torch.equal(pa, pb), n
    batch = random_batch(a, 4)
    with torch.no_grad():
        torch.testing.assert_close(a(batch.state).policy_logits, b(batch.state).policy_logits)
    # only trainable parameters are stored: the file is small
    n_trainable = sum(p.numel() for p in a.trainable_parameters())
    assert path.stat().st_size < 4 * n_trainable + 100_000


def test_checkpoint_versions_number_on_across_restarts(tmp_path):
    folder = tmp_path / "checkpoints"
    assert latest_checkpoint_version(folder) == 0  # no folder yet
    model = make_tiny_model(seed=0)
    for v in (1, 2, 11):
        save_checkpoint(versioned_checkpoint_path(folder, v), model, v, 0)
    (folder / "adapters_vX.safetensors").write_text("not a version")
    (folder / "notes.txt").write_text("")
    assert versioned_checkpoint_path(folder, 11).name == "adapters_v0011.safetensors"
    assert latest_checkpoint_version(folder) == 11


def test_corrupt_or_truncated_checkpoint_is_refused(tmp_path):
    model = make_tiny_model()
    path = tmp_path / "a.safetensors"
    save_checkpoint(path, model, 1, 1)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path, model)
    # truncated, with a sidecar that matches the truncated bytes: caught by the parser
    save_checkpoint(path, model, 1, 1)
    path.write_bytes(path.read_bytes()[:50])
    from safari_ros.core.backbone import file_sha256

    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path, model, expected_sha256=file_sha256(path))
    sidecar_path(path).unlink()
    with pytest.raises(CheckpointError, match="no sha256 sidecar"):
        load_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors", model)


def test_mismatched_backbone_or_action_set_is_refused(tmp_path):
    model = make_tiny_model()
    path = tmp_path / "a.safetensors"
    save_checkpoint(path, model, 1, 1)
    other_backbone = make_tiny_model(
        LearningConfig.from_dict(tiny_learning_dict(random_init_seed=1), episode_steps=60)
    )
    with pytest.raises(CheckpointError, match="backbone"):
        load_checkpoint(path, other_backbone)
    actions = config_actions()
    swapped = [
        ActionSpec(i, a.name, a.description)
        for i, a in enumerate([actions[1], actions[0], *actions[2:]])
    ]
    with pytest.raises(CheckpointError, match="action set"):
        validate_checkpoint(path, make_tiny_model(actions=swapped))
    raw = tiny_learning_dict()
    raw["split_layer_k"] = 3
    raw["adapters"].update(task_layers=[3], safety_layers=[3])
    with pytest.raises(CheckpointError, match="splits at layer"):
        load_checkpoint(path, make_tiny_model(LearningConfig.from_dict(raw, episode_steps=60)))
    raw = tiny_learning_dict()
    raw["heads"]["hidden"] = 16
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(path, make_tiny_model(LearningConfig.from_dict(raw, episode_steps=60)))
    # Same shapes, other input units: the heads would misread the TCP position.
    raw = tiny_learning_dict()
    raw["heads"]["tcp_unit_m"] = 1.0
    with pytest.raises(CheckpointError, match="tcp_unit_m"):
        load_checkpoint(path, make_tiny_model(LearningConfig.from_dict(raw, episode_steps=60)))


def test_non_safari_file_and_nan_parameters_are_refused(tmp_path):
    model = make_tiny_model()
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    from safari_ros.core.backbone import file_sha256

    with pytest.raises(CheckpointError, match="not a SAFARI"):
        load_checkpoint(foreign, model, expected_sha256=file_sha256(foreign))
    with torch.no_grad():
        model.heads.action_offset[0, 0] = float("nan")
    assert not nan_free(model) and nan_free(make_tiny_model())
    path = tmp_path / "nan.safetensors"
    save_checkpoint(path, model, 1, 1)
    fresh = make_tiny_model()
    before = fresh.heads.action_offset.detach().clone()
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(path, fresh)
    assert torch.equal(fresh.heads.action_offset, before)  # all-or-nothing


def test_nan_free_helper():
    assert nan_free({"a": 1.0, "b": torch.ones(3)})
    assert not nan_free({"a": float("inf")})
    assert not nan_free([torch.tensor([0.0, float("nan")])])
    out = make_tiny_model(tiny_hp())(random_batch(make_tiny_model(), 2).state)
    assert nan_free(out)


def test_a_checkpoint_write_that_fails_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    """A full disk while the sha256 sidecar is written (ENOSPC): no checkpoint may be visible
    without the sidecar that validates it, and no temporary file may be left behind."""
    import errno

    from safari_ros.core import checkpoint

    def disk_full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    model = make_tiny_model()
    path = tmp_path / "adapters_v0001.safetensors"
    monkeypatch.setattr(checkpoint, "_atomic_write_text", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(path, model, 1, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.undo()
    save_checkpoint(path, model, 1, 1)  # the disk has room again
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".sha256"]
