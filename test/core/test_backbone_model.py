"""Backbone loading/refusal, the prefix/suffix split, adapters at init, trainable share."""

from __future__ import annotations

import logging

import numpy as np
import open_clip
import pytest
import torch
from core_helpers import TINY, config_actions, make_tiny_model, random_batch, tiny_learning_dict
from safetensors.torch import save_file

from safari_ros.config import ConfigError, load_config
from safari_ros.core.adapters import SafetyAdapter, TaskAdapter
from safari_ros.core.backbone import (
    BackboneError,
    check_vit_architecture,
    file_sha256,
    load_backbone,
)
from safari_ros.core.hparams import BackboneConfig, LearningConfig, learning_config
from safari_ros.core.losses import pretrain_loss
from safari_ros.core.model import SafariModel, build_model


def test_cnn_backbone_is_refused():
    with pytest.raises(BackboneError, match="CNN"):
        load_backbone(BackboneConfig(architecture="RN50"))


def test_unknown_architecture_is_refused():
    with pytest.raises(BackboneError, match="unknown open_clip architecture"):
        load_backbone(BackboneConfig(architecture="ViT-Nonexistent-99"))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(BackboneError, match=r"weights file not found.*never downloads"):
        load_backbone(BackboneConfig(architecture=TINY, weights=str(missing), image_size=32))
    # a pretrained *tag* is not a local file either: never downloaded
    with pytest.raises(BackboneError, match="weights file not found"):
        load_backbone(BackboneConfig(architecture="ViT-B-32", weights="openai"))


def test_random_init_warns_loudly_and_is_reproducible(caplog):
    cfg = BackboneConfig(architecture=TINY, image_size=32, random_init_seed=3)
    with caplog.at_level(logging.WARNING):
        a = load_backbone(cfg)
    assert any("RANDOMLY INITIALISED" in r.getMessage() for r in caplog.records)
    b = load_backbone(cfg)
    assert a.backbone_id == b.backbone_id == f"{TINY}@random-seed3"
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = load_backbone(BackboneConfig(architecture=TINY, image_size=32, random_init_seed=4))
    assert not torch.equal(a.visual.proj, c.visual.proj)


def test_local_weights_file_loads_exactly(tmp_path):
    torch.manual_seed(123)
    src = open_clip.create_model(TINY, pretrained=None)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    bb = load_backbone(BackboneConfig(architecture=TINY, weights=str(path), image_size=32))
    assert bb.backbone_id == f"{TINY}@sha256:{file_sha256(path)}"
    images = torch.randn(2, 3, 32, 32)
    src.eval()
    with torch.no_grad():
        assert torch.equal(bb.encode_image(images), src.encode_image(images))
        tok = open_clip.get_tokenizer(TINY)(["touch the red cube"])
        ref = torch.nn.functional.normalize(src.encode_text(tok), dim=-1)[0]
    torch.testing.assert_close(bb.text.encode(["touch the red cube"])[0], ref)


def test_weights_for_another_architecture_are_refused(tmp_path):
    src = open_clip.create_model(TINY, pretrained=None)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    with pytest.raises(BackboneError, match="could not load ViT-B-32 weights"):
        load_backbone(BackboneConfig(architecture="ViT-B-32", weights=str(path)))


def test_backbone_is_frozen_and_stays_in_eval_mode(tiny_model):
    bb = tiny_model.backbone
    assert all(not p.requires_grad for p in bb.parameters())
    tiny_model.train()
    assert not bb.training and not bb.clip.training
    assert tiny_model.heads.training


def test_adapters_at_init_are_identity_and_suffix_matches_backbone(tiny_model):
    images = torch.randn(3, 3, 32, 32)
    tokens = tiny_model.prefix(images)
    assert tokens.shape == (3, tiny_model.backbone.num_tokens, tiny_model.backbone.width)
    with torch.no_grad():
        ours = tiny_model.suffix(tokens)
    torch.testing.assert_close(ours, tiny_model.backbone.encode_image(images), atol=1e-5, rtol=0)
    # and it is the adapters, not luck: a non-zero up-projection changes the output
    with torch.no_grad():
        # (a constant bias would not do: every LayerNorm downstream removes it)
        torch.nn.init.normal_(next(iter(tiny_model.adapters.values()))[0].up.weight)
        assert (tiny_model.suffix(tokens) - ours).abs().max() > 1e-3


def test_adapter_formulas():
    torch.manual_seed(0)
    h = torch.randn(2, 5, 16)
    task, safety = TaskAdapter(16, 4), SafetyAdapter(16, 4)
    assert torch.equal(task(h), h) and torch.equal(safety(h), h)
    for m in (task, safety):
        torch.nn.init.normal_(m.up.weight)
    r = task.up(torch.nn.functional.gelu(task.down(h)))
    torch.testing.assert_close(task(h), h + r)
    r = safety.up(torch.nn.functional.gelu(safety.down(h)))
    gate = torch.sigmoid(h @ safety.f_safety.weight.T + safety.f_safety.bias)
    assert gate.shape == (2, 5, 1)  # one scalar gate per token
    torch.testing.assert_close(safety(h), h + r * gate)


def test_gradients_reach_only_adapters_and_heads(tiny_model):
    batch = random_batch(tiny_model, 8)
    out = tiny_model.suffix_and_heads(batch.state)
    loss, _ = pretrain_loss(out, batch, tiny_model.hp.pretrain)
    # plus a term on every critic output, so that every head is reached
    (loss + out.q_reward.mean() + out.q_cost.mean() + out.v_cost.mean()).backward()
    for name, p in tiny_model.backbone.named_parameters():
        assert p.grad is None, f"backbone parameter {name} received a gradient"
    trainable = dict(tiny_model.trainable_named_parameters())
    for name, p in trainable.items():
        assert p.grad is not None, f"trainable parameter {name} received no gradient"
    # the adapters' up-projections (zero at init) get a non-zero gradient: they can learn
    ups = [m.up.weight.grad for mods in tiny_model.adapters.values() for m in mods]
    assert all(g.abs().sum() > 0 for g in ups)
    n_backbone = sum(1 for _ in tiny_model.backbone.parameters())
    assert len(trainable) + n_backbone == sum(1 for _ in tiny_model.parameters())


def test_text_encoder_caches_per_string(tiny_model):
    text = tiny_model.backbone.text
    n = text.cache_size()
    a = tiny_model.encode_instruction(["lift the red cube", "lift the red cube"])
    # the tiny model has no spatial readout: the sentence and its frame, each embedded once
    e = text.encode(["x"]).shape[1]
    assert tiny_model.hp.heads.spatial_queries == 0 and a.shape[1] == 2 * e
    assert text.cache_size() == n + 3  # the sentence, "lift something", and "x" just now
    torch.testing.assert_close(a[0], a[1])
    torch.testing.assert_close(a[0, e:], text.encode(["lift something"])[0])
    assert abs(float(a[0, :e].norm()) - 1.0) < 1e-5


def test_preprocess_resizes_crops_and_normalises(tiny_model):
    img = np.full((48, 64, 3), 255, np.uint8)
    x = tiny_model.backbone.preprocess(img)
    assert x.shape == (1, 3, 32, 32)
    mean = torch.tensor(tiny_model.backbone.image_mean)
    std = torch.tensor(tiny_model.backbone.image_std)
    torch.testing.assert_close(x[0, :, 5, 5], (1 - mean) / std)


def test_adapter_layers_outside_the_suffix_are_refused():
    raw = tiny_learning_dict()
    raw["adapters"]["task_layers"] = [1, 2]  # layer 1 is in the frozen prefix
    hp = LearningConfig.from_dict(raw, episode_steps=60)
    with pytest.raises(ConfigError, match="outside the adapted suffix"):
        build_model(hp, config_actions())


def test_unknown_config_key_is_refused():
    raw = tiny_learning_dict()
    raw["scapo"]["epsilon_kll"] = 0.1
    with pytest.raises(ConfigError, match="epsilon_kll"):
        LearningConfig.from_dict(raw)


def test_repository_config_parses():
    hp = learning_config(load_config())
    open_clip.add_model_config(hp.backbone.model_config_dir)
    check_vit_architecture(hp.backbone.architecture)  # an open_clip ViT the split supports
    assert hp.scapo.episode_steps == load_config()["sim"]["episode_steps"]


def _vit_b32_config() -> dict:
    """The repository config switched to a real CLIP's architecture, as README "The backbone"
    describes it (random init here: no weights can be downloaded)."""
    cfg = load_config()
    learning = cfg["learning"]
    learning["backbone"].update(architecture="ViT-B-32", weights="", image_size=224,
                                model_config_dir="")
    learning["split_layer_k"] = 8
    learning["adapters"].update(task_layers=[8, 9, 10, 11], safety_layers=[10, 11])
    learning["heads"]["depth_grid"] = [7, 7]  # its 224 px / 32 px patch grid
    return cfg


@pytest.mark.parametrize("backbone", ["ViT-B-32", "default"])
def test_trainable_share(backbone, capsys):
    cfg = _vit_b32_config() if backbone == "ViT-B-32" else load_config()
    model: SafariModel = build_model(cfg)
    share = model.trainable_share()
    with capsys.disabled():
        print(
            f"\n{model.backbone.architecture} trainable share: {share['trainable']} / "
            f"{share['vision_tower']} = {100 * share['share_of_vision_tower']:.4f}% of the image "
            f"tower ({100 * share['share_of_clip']:.4f}% of all CLIP parameters; adapters "
            f"{share['adapters']}, heads {share['heads']})"
        )
    # The design's aim (< 1%) holds for a real CLIP's adapters and heads; the spatial readout
    # adds its low-rank queries (0.04% more: 1.04% with two queries). SAFARI's own CLIP is so
    # small (1.3 M image-tower parameters) that the same heads weigh more, still under the
    # seed's 5% of CLIP.
    if backbone == "ViT-B-32":
        readout = sum(p.numel() for p in model.heads.readout.parameters())
        assert (share["trainable"] - readout) / share["vision_tower"] < 0.01
        assert readout / share["vision_tower"] < 0.0005
    else:
        assert share["share_of_clip"] < 0.05
    assert share["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_grad_checkpointing_gives_the_same_gradients():
    a, b = make_tiny_model(seed=1), make_tiny_model(seed=1)
    b.grad_checkpointing = True
    batch = random_batch(a, 4)
    for m in (a, b):
        with torch.no_grad():
            for mods in m.adapters.values():
                for ad in mods:
                    ad.up.weight.fill_(0.01)
        loss, _ = pretrain_loss(m.suffix_and_heads(batch.state), batch, m.hp.pretrain)
        loss.backward()
    for (n, pa), (_, pb) in zip(
        a.trainable_named_parameters(), b.trainable_named_parameters(), strict=True
    ):
        torch.testing.assert_close(pa.grad, pb.grad, msg=n)
