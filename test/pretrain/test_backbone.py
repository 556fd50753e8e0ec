"""The backbone CLIP's pre-training (safari_pretrain backbone): captions that never name the
task, a miniature run that learns, and weights that load only when they match their card."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from safari_ros.config import action_specs, load_config
from safari_ros.core.backbone import BackboneError, load_backbone, weights_card_path
from safari_ros.core.hparams import RegionOfInterest, learning_config
from safari_ros.pretrain.backbone import (
    BackboneTrainSettings,
    dense_loss,
    load_backbone_data_config,
    train_backbone,
)
from safari_ros.pretrain.scenes import (
    SceneRandomiser,
    caption_for_evaluation,
    caption_for_training,
    patch_label_fractions,
    scene_facts,
)

MINI = "SafariTest-CLIP-Mini"  # 2-block ViT, 48 px, 8 px patches (36 tokens); 1-block text tower
open_clip.add_model_config(Path(__file__).parent / "model_configs")


def _task_phrases(cfg: dict) -> tuple[list[str], list[re.Pattern]]:
    """What a caption must never contain: action names and descriptions, and every split's
    instruction templates (as patterns, and their fixed leading words)."""
    words = []
    for a in action_specs(cfg):
        words += [a.name, a.name.replace("_", " "), a.description]
    patterns = []
    for split in cfg["sim"]["tasks"].values():
        if not isinstance(split, dict) or "templates" not in split:
            continue
        for phrasing in split["templates"].values():
            pattern = re.escape(phrasing)
            for slot in ("colour", "object", "target_colour"):
                pattern = pattern.replace(re.escape("{" + slot + "}"), "[a-z]+")
            patterns.append(re.compile(pattern))
            words.append(phrasing.split("{")[0].strip())  # "push the", "pick up the", ...
    return words, patterns


def test_captions_describe_scenes_never_the_task() -> None:
    cfg = load_config()
    data_cfg = load_backbone_data_config(cfg)
    words, patterns = _task_phrases(cfg)
    randomiser = SceneRandomiser(cfg, data_cfg)
    rng = np.random.default_rng(7)
    captions: list[str] = []
    seen_shapes: set[str] = set()
    seen_colours: set[str] = set()
    try:
        for i in range(150):  # arranging only: no rendering needed to check the words
            state = randomiser.sample(np.random.default_rng([3, i]))
            facts = scene_facts(state)
            captions += [*facts, caption_for_evaluation(state),
                         caption_for_training(facts, rng)]
            seen_shapes |= {o.shape for o in state.objects}
            seen_colours |= {o.colour for o in state.objects}
    finally:
        randomiser.close()
    assert len(captions) > 1000
    for caption in captions:
        tokens = caption.replace(",", " ").replace(";", " ").split()
        for w in words:
            assert (w not in tokens) if " " not in w else (w not in caption), (w, caption)
        for p in patterns:
            assert not p.search(caption), (p.pattern, caption)
        assert not re.search(r"\b(success|reward|task|instruction)\b", caption), caption
    # broader than the task: both splits' words and the extras all appear
    tasks = cfg["sim"]["tasks"]
    task_shapes = set(tasks["train"]["objects"]) | set(tasks["heldout"]["objects"])
    task_colours = set(tasks["train"]["colours"]) | set(tasks["heldout"]["colours"])
    assert task_shapes < seen_shapes and task_colours < seen_colours
    assert set(data_cfg["scenes"]["extra_shapes"]) <= seen_shapes


def test_patch_labels_are_the_share_of_each_patch_each_thing_covers() -> None:
    labels = np.zeros((8, 8), np.int16)
    labels[0:2, 0:2] = 1  # all of the first patch (of 2 x 2 patches of 4 x 4 pixels)
    labels[4:6, 6:8] = 2  # a quarter of the last patch
    shares = patch_label_fractions(labels, 3, size=8, grid=2)
    assert shares.shape == (4, 3)
    np.testing.assert_allclose(shares.sum(1), 1.0)
    np.testing.assert_allclose(shares[:, 1], [0.25, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(shares[:, 2], [0.0, 0.0, 0.0, 0.25])
    # resized like the image: a 16 px map onto the same 8 px grid gives the same shares
    big = np.kron(labels, np.ones((2, 2), np.int16))
    np.testing.assert_allclose(patch_label_fractions(big, 3, size=8, grid=2), shares)


def test_a_labelled_scene_states_only_what_the_window_shows() -> None:
    cfg = load_config()
    data_cfg = load_backbone_data_config(cfg)
    randomiser = SceneRandomiser(cfg, data_cfg)
    cam = cfg["sim"]["camera"]
    try:
        state = randomiser.sample(np.random.default_rng([5, 0]))
        assert state.objects
        rgb, seen, phrases, labels = randomiser.render_labelled(state, None)
        assert rgb.shape[:2] == labels.shape == (cam["height"], cam["width"])
        assert phrases[:3] == ["the table", "the robot arm", "the gripper"]
        for o in seen.objects:  # every object stated is drawn, under its own phrase
            k = next(i for i, p in enumerate(phrases) if p.endswith(o.name))
            assert (labels == k).sum() >= 12
        # a window of table in the near corner shows none of the objects: none is stated
        corner = RegionOfInterest(x_offset=0, y_offset=cam["height"] - 20, width=20, height=20,
                                  image_width=cam["width"], image_height=cam["height"])
        rgb, seen, phrases, labels = randomiser.render_labelled(state, corner)
        assert rgb.shape == (20, 20, 3) and labels.shape == (20, 20)
        assert not seen.objects and not seen.pads
        assert scene_facts(seen)[0] == "an empty table"
    finally:
        randomiser.close()


def test_the_dense_loss_prefers_patches_that_match_their_phrases() -> None:
    gen = torch.Generator().manual_seed(0)
    phrases = torch.nn.functional.normalize(torch.randn(3, 8, generator=gen), dim=-1)
    targets = torch.eye(3)[torch.tensor([0, 1, 2, 2])][None]  # (1, 4 patches, 3 phrases)
    matched = phrases[torch.tensor([0, 1, 2, 2])][None]
    shuffled = phrases[torch.tensor([1, 2, 0, 0])][None]
    scale = torch.tensor(20.0)
    # the floor: the third phrase covers two patches, so its "where" target is split (ln 2 / 3)
    assert dense_loss(matched, phrases, targets, scale) < 0.3
    assert dense_loss(shuffled, phrases, targets, scale) > 5.0
    patches = torch.randn(1, 4, 8, generator=gen, requires_grad=True)
    before = dense_loss(patches, phrases, targets, scale)
    before.backward()
    with torch.no_grad():
        after = dense_loss(patches - 0.01 * patches.grad, phrases, targets, scale)
    assert after < before


def _mini_config() -> tuple[dict, dict]:
    """Small renders of simpler scenes, so that a miniature model learns within seconds: a
    closer camera, objects three times their size, one or two of them, no pads or props."""
    cfg = load_config()
    cfg["learning"]["backbone"].update(architecture=MINI, image_size=48, weights="",
                                       model_config_dir="", roi=None)
    cfg["sim"]["camera"].update(width=64, height=64, position=[1.0, 0.0, 0.55])
    data_cfg = load_backbone_data_config(cfg)
    for shapes in (cfg["sim"]["shapes"], data_cfg["scenes"]["extra_shapes"]):
        for spec in shapes.values():
            spec["size"] = [3 * float(v) for v in spec["size"]]
    data_cfg["scenes"].update(objects=[1, 2], pads=[0, 0], prop_hidden_prob=1.0,
                              zone_overlay_prob=0.0, min_gap_m=0.15,
                              region={"min": [0.35, -0.2], "max": [0.7, 0.2]})
    return cfg, data_cfg


@pytest.fixture(scope="module")
def mini_backbone(tmp_path_factory) -> tuple[Path, dict]:
    """A miniature backbone run: 400 scenes, 200 steps of a 2-block CLIP."""
    cfg, data_cfg = _mini_config()
    settings = BackboneTrainSettings.from_config(
        data_cfg, images=400, heldout_images=100, steps=200, batch_size=32, lr=2e-3,
        warmup_steps=20, retrieval_pool=20, workers=1, device="cpu", progress=False)
    out = tmp_path_factory.mktemp("backbone") / "mini.safetensors"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        card = train_backbone(cfg, data_cfg, out, settings, command=["test"])
    finally:
        torch.set_num_threads(before)
    return out, card


@pytest.mark.slow
def test_miniature_backbone_retrieval_rises_above_chance(mini_backbone) -> None:
    out, card = mini_backbone
    r, ref = card["heldout"]["retrieval"], card["random_init_reference"]["retrieval"]
    print(json.dumps({"trained": r, "random_init": ref}, indent=1))
    assert card["loss"]["last_50"] < card["loss"]["first_50"] - 0.5
    for direction in ("image_to_text", "text_to_image"):
        assert r[f"{direction}_top1"] >= 3 * r["chance_top1"], r
        assert r[f"{direction}_top5"] >= 2 * r["chance_top5"], r
        assert r[f"{direction}_top5"] > ref[f"{direction}_top5"] + 0.1, (r, ref)
    loc, ref_loc = card["heldout"]["localisation"], card["random_init_reference"]["localisation"]
    print(json.dumps({"trained": loc, "random_init": ref_loc}, indent=1))
    md = out.with_suffix(".md").read_text()
    assert card["sha256"] in md and "random init" in md


def _load(cfg: dict, weights: Path):
    cfg["learning"]["backbone"]["weights"] = str(weights)
    return load_backbone(learning_config(cfg).backbone)


@pytest.mark.slow
def test_weights_load_only_when_they_match_their_card(mini_backbone, tmp_path) -> None:
    out, card = mini_backbone
    cfg, _ = _mini_config()
    model = _load(cfg, out)
    assert model.backbone_id == f"{MINI}@sha256:{card['sha256']}"
    x = torch.rand(2, 3, 48, 48)
    assert torch.isfinite(model.encode_image(x)).all()

    for damage in ("truncate", "alter"):
        bad = tmp_path / damage / out.name
        bad.parent.mkdir()
        shutil.copy(out, bad)
        shutil.copy(weights_card_path(out), weights_card_path(bad))
        data = bad.read_bytes()
        if damage == "truncate":
            bad.write_bytes(data[: len(data) // 2])
        else:
            i = len(data) - 100  # a weight byte, not the header: the file still parses
            bad.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
        with pytest.raises(BackboneError, match="does not match its model card"):
            _load(cfg, bad)

    swapped = tmp_path / "swapped" / out.name
    swapped.parent.mkdir()
    shutil.copy(out, swapped)
    other = json.loads(weights_card_path(out).read_text())
    other["architecture"] = "ViT-B-32"
    weights_card_path(swapped).write_text(json.dumps(other))
    with pytest.raises(BackboneError, match="card says so"):
        _load(cfg, swapped)


def test_the_shipped_backbone_matches_its_card_and_loads() -> None:
    cfg = load_config()
    bb = learning_config(cfg).backbone
    weights = Path(bb.weights)
    assert weights.is_file(), f"the default backbone {weights} is missing"
    card = json.loads(weights_card_path(weights).read_text())
    model = load_backbone(bb)
    assert model.backbone_id == f"{bb.architecture}@sha256:{card['sha256']}"
    assert model.image_size == bb.image_size == card["image_size"]
    # its card records evaluation clearly above chance, and the command that made it
    r = card["heldout"]["retrieval"]
    assert r["image_to_text_top1"] > 5 * r["chance_top1"]
    assert card["made_with"]["command"].startswith("safari_pretrain backbone")
