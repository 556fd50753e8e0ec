"""What the backbone sees (learning.backbone.roi) and where the heads look (SpatialReadout)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from core.core_helpers import make_tiny_model, random_states, tiny_hp

from safari_ros.config import load_config
from safari_ros.core.backbone import crop_roi
from safari_ros.core.features import DEPTH_CHANNELS
from safari_ros.core.heads import EMPTY_PATCH_WEIGHT, PEAK_RADIUS, SpatialReadout
from safari_ros.core.hparams import LearningConfig, RegionOfInterest, learning_config
from safari_ros.core.language import instruction_frame, referring_phrases
from safari_ros.sim import TabletopSim

ROI = RegionOfInterest(x_offset=90, y_offset=120, width=120, height=120, image_width=336,
                       image_height=336)


def test_the_window_is_cut_at_the_configured_pixels_and_scaled_with_the_resolution() -> None:
    full = np.arange(336 * 336 * 3, dtype=np.int64).reshape(336, 336, 3)
    window = crop_roi(full, ROI)
    assert window.shape == (120, 120, 3)
    assert np.array_equal(window[0, 0], full[120, 90]) and np.array_equal(window[-1, -1],
                                                                        full[239, 209])
    # the same camera at a fifth of the resolution: the same part of the view
    small = crop_roi(torch.zeros(2, 84, 84, 3), ROI)
    assert small.shape == (2, 30, 30, 3)
    assert crop_roi(full, None) is full


def test_a_camera_of_another_shape_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="roi is set for 336x336 images, not 320x240"):
        crop_roi(np.zeros((240, 320, 3), np.uint8), ROI)
    with pytest.raises(ValueError, match="does not fit"):
        RegionOfInterest(x_offset=300, y_offset=0, width=100, height=100, image_width=336,
                         image_height=336)


def test_the_configured_window_frames_the_task_region() -> None:
    """Objects anywhere in sim.tasks.region (plus a lattice step), on the table or lifted (and
    the gripper holding them), lie inside the configured ROI of the configured camera."""
    cfg = load_config()
    roi = learning_config(cfg).backbone.roi
    cam = cfg["sim"]["camera"]
    assert (roi.image_width, roi.image_height) == (cam["width"], cam["height"])
    region, step = cfg["sim"]["tasks"]["region"], float(cfg["actions"]["step_m"])
    lo, hi = np.array(region["min"]) - step, np.array(region["max"]) + step
    lift = float(cfg["sim"]["tasks"]["lift_height_m"]) + 0.04
    points = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                       for z in (0.0, lift)])
    sim = TabletopSim(cfg)
    try:
        px = sim.project(points)
    finally:
        sim.close()
    assert np.all(px[:, 0] >= roi.x_offset) and np.all(px[:, 0] <= roi.x_offset + roi.width)
    assert np.all(px[:, 1] >= roi.y_offset) and np.all(px[:, 1] <= roi.y_offset + roi.height)


def test_preprocess_shows_the_backbone_only_the_window() -> None:
    raw = tiny_hp().raw
    raw["backbone"]["roi"] = {"x_offset": 8, "y_offset": 4, "width": 16, "height": 16,
                              "image_width": 32, "image_height": 32}
    hp = LearningConfig.from_dict(raw, episode_steps=60)
    model = make_tiny_model(hp)
    image = np.zeros((32, 32, 3), np.uint8)
    image[4:20, 8:24] = 255  # the window is white, the rest black
    x = model.backbone.preprocess(image)
    white = (1.0 - torch.tensor(model.backbone.image_mean)) / torch.tensor(
        model.backbone.image_std)
    assert torch.allclose(x[0].mean(dim=(1, 2)), white, atol=1e-3)


def _read(readout: SpatialReadout, patches: torch.Tensor, phrases: torch.Tensor) -> torch.Tensor:
    """The readout with flat, empty lifted depth (its image-space part is under test here)."""
    b, p = patches.shape[:2]
    return readout(patches, phrases, torch.zeros(b, p, DEPTH_CHANNELS), torch.zeros(b, 3), 0.1)[0]


def _readout_inputs(grid: int = 3, dim: int = 16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    words = torch.nn.functional.normalize(torch.randn(grid * grid, dim, generator=gen), dim=-1)
    return words, grid, dim


def test_the_readout_points_at_the_patch_that_matches_the_instruction() -> None:
    words, grid, dim = _readout_inputs()
    readout = SpatialReadout(dim, n_queries=2, grid=grid)
    with torch.no_grad():
        readout.log_scale.fill_(np.log(200.0))  # sharp: the soft-argmax lands on the best patch
    patches = words[None].repeat(4, 1, 1)
    target = torch.tensor([0, 4, 5, 8])  # row-major patch indices
    out = _read(readout, patches, words[target][:, None].repeat(1, 2, 1))
    assert out.shape == (4, 12)
    centres = (torch.arange(grid) + 0.5) / grid * 2 - 1
    expected = torch.stack([centres[target % grid], centres[target // grid]], dim=-1)
    for q in range(2):  # both queries start as their phrase itself
        assert torch.allclose(out[:, 2 * q:2 * q + 2], expected, atol=0.05)
    assert torch.all(out[:, 4:6] > 0.9)  # peak attention: sure of it


def test_the_readout_learns_to_look_elsewhere() -> None:
    """Its query map is trainable: the readout can learn to point at another patch than the
    one its phrase matches."""
    words, grid, dim = _readout_inputs(seed=1)
    torch.manual_seed(0)
    readout = SpatialReadout(dim, n_queries=1, grid=grid)
    opt = torch.optim.Adam(readout.parameters(), lr=0.02)
    patches = words[None].repeat(9, 1, 1)
    instruction = words[:, None]  # phrase i names patch i ...
    goal = torch.roll(torch.arange(9), 1)  # ... and the readout must find patch i - 1
    centres = (torch.arange(grid) + 0.5) / grid * 2 - 1
    want = torch.stack([centres[goal % grid], centres[goal // grid]], dim=-1)
    first = None
    for _ in range(300):
        loss = (_read(readout, patches, instruction)[:, :2] - want).pow(2).sum(-1).mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.1 * first, (first, float(loss.detach()))


def test_the_readout_lands_between_patches_when_a_thing_straddles_them() -> None:
    """Attention spread over two patches in proportion to how much of the thing each holds (what
    the backbone's dense loss trains) puts the soft-argmax between their centres."""
    words, grid, dim = _readout_inputs()
    readout = SpatialReadout(dim, n_queries=1, grid=grid, init_scale=50.0)
    phrase = words[0]
    other = torch.nn.functional.normalize(torch.randn(dim, generator=torch.Generator()
                                                      .manual_seed(3)), dim=-1)
    patches = other.repeat(1, grid * grid, 1)
    share = 0.25  # a quarter of the thing in patch 1, the rest in patch 0
    # similarities ln(3) / scale apart give the two patches a 3:1 attention
    patches[0, 0] = phrase
    cos1 = 1.0 + float(np.log(share / (1 - share))) / 50.0
    orth = torch.nn.functional.normalize(other - (other @ phrase) * phrase, dim=-1)
    patches[0, 1] = cos1 * phrase + np.sqrt(1 - cos1 ** 2) * orth
    x = float(_read(readout, patches, phrase[None, None])[0, 0].detach())
    centres = (np.arange(grid) + 0.5) / grid * 2 - 1
    assert x == pytest.approx((1 - share) * centres[0] + share * centres[1], abs=0.02)


def test_instructions_are_encoded_with_their_referring_phrases() -> None:
    raw = tiny_hp().raw
    raw["heads"]["spatial_queries"] = 2
    raw["heads"]["depth_grid"] = [2, 2]
    model = make_tiny_model(LearningConfig.from_dict(raw, episode_steps=60))
    text = model.backbone.text
    e = model.backbone.embed_dim
    enc = model.encode_instruction(["push the red cube onto the blue square", "lift the cube",
                                    "stop"])
    assert enc.shape == (3, 4 * e) == (3, model.instruction_dim)
    want = text.encode(["push the red cube onto the blue square", "push something onto something",
                        "a red cube", "a blue square"])
    assert torch.allclose(enc[0], want.reshape(-1))
    assert torch.allclose(enc[1, 2 * e:3 * e], enc[1, 3 * e:])  # one phrase: repeated
    assert torch.allclose(enc[2, 2 * e:3 * e], text.encode(["stop"])[0])  # none: the sentence


@pytest.mark.parametrize("text, frame", [
    ("push the red cube onto the blue square", "push something onto something"),
    ("Reach out and tap the orange sphere.", "reach out and tap something"),
    ("lift the cube", "lift something"),
    ("stop", "stop"),
])
def test_the_frame_of_an_instruction_keeps_what_to_do_not_what_to_do_it_to(text, frame) -> None:
    assert instruction_frame(text) == frame


def test_a_frozen_patch_readout_does_not_move_with_the_adapters() -> None:
    """heads.readout_frozen_patches: the readout's attention reads the backbone's own patch
    embeddings, so changing the adapters changes the pooled state but not where it looks; with
    the adapted patches it does."""
    attention = {}
    for frozen in (True, False):
        raw = tiny_hp().raw
        raw["heads"].update(spatial_queries=1, depth_grid=[2, 2], readout_frozen_patches=frozen)
        model = make_tiny_model(LearningConfig.from_dict(raw, episode_steps=60))
        state = random_states(model, 3, torch.Generator().manual_seed(0))
        with torch.no_grad():
            before = model.suffix_and_heads(state)
            for p in model.adapters.parameters():
                p.add_(0.5 * torch.randn_like(p))
            after = model.suffix_and_heads(state)
        assert not torch.allclose(before.state_embedding, after.state_embedding, atol=1e-4)
        attention[frozen] = torch.allclose(before.readout_attention, after.readout_attention,
                                           atol=1e-6)
    assert attention == {True: True, False: False}


def test_heads_with_a_readout_refuse_to_run_without_patches() -> None:
    raw = tiny_hp().raw
    raw["heads"]["spatial_queries"] = 2
    raw["heads"]["depth_grid"] = [2, 2]  # the tiny ViT's patches
    model = make_tiny_model(LearningConfig.from_dict(raw, episode_steps=60))
    assert model.heads.readout is not None and model.heads.readout in model.heads.actor_modules()
    state = random_states(model, 3, torch.Generator().manual_seed(0))
    out = model.suffix_and_heads(state)  # the model passes its patch embeddings
    assert out.policy_logits.shape == (3, len(model.actions))
    pooled = model.suffix(state.tokens)
    with pytest.raises(ValueError, match="pass patches"):
        model.heads(pooled, state.depth, state.proprio, state.instruction)


@pytest.mark.parametrize(("text", "phrases"), [
    ("push the red cube onto the blue square", ["a red cube", "a blue square"]),
    ("slide the purple box to the orange pad", ["a purple box", "an orange pad"]),
    ("Reach out and tap the orange sphere.", ["an orange sphere"]),
    ("pick up the green ball and put it next to a yellow cylinder",
     ["a green ball", "a yellow cylinder"]),
    ("stop", []),
])
def test_referring_phrases_are_the_determiner_led_noun_phrases(text, phrases) -> None:
    assert referring_phrases(text) == phrases


def test_a_depth_grid_that_is_not_the_patch_grid_is_refused_by_name() -> None:
    raw = tiny_hp().raw
    raw["heads"]["spatial_queries"] = 2  # the tiny ViT has 2 x 2 patches, the config 8 x 8 cells
    with pytest.raises(ValueError, match="2x2 patches: the depth grid must match it"):
        make_tiny_model(LearningConfig.from_dict(raw, episode_steps=60))


def test_the_readout_says_where_its_patch_points_are_relative_to_the_tcp() -> None:
    """Attention on one patch: the readout's last three entries are that patch's lifted
    centroid minus the TCP, in the heads' unit; attention spread over a patch with an object
    and empty table counts the object's patch by its share of points above the table."""
    words, grid, dim = _readout_inputs()
    readout = SpatialReadout(dim, n_queries=1, grid=grid)
    with torch.no_grad():
        readout.log_scale.fill_(np.log(500.0))
    points = torch.zeros(1, grid * grid, DEPTH_CHANNELS)
    points[0, :, :3] = torch.tensor([0.5, 0.0, 0.0])  # the table
    points[0, 4] = torch.tensor([0.62, -0.08, 0.03, 0.4])  # an object in the middle patch
    tcp = torch.tensor([[0.40, 0.0, 0.25]])
    out, attn = readout(words[None], words[4][None, None], points, tcp, 0.1)
    assert attn.shape == (1, 1, grid * grid) and float(attn[0, 0, 4]) > 0.99
    assert torch.allclose(out[0, 3:], torch.tensor([2.2, -0.8, -2.2]), atol=1e-3)
    even = torch.full((1, 1, grid * grid), 1.0 / (grid * grid))
    where = readout.locate(even, points)[0, 0]
    w_obj, w_empty = 0.4 + EMPTY_PATCH_WEIGHT, EMPTY_PATCH_WEIGHT
    near = (PEAK_RADIUS + 1) ** 2 - 1  # the peak is the first cell (a corner): its window
    expected_x = (w_obj * 0.62 + near * w_empty * 0.5) / (w_obj + near * w_empty)
    assert float(where[0]) == pytest.approx(expected_x, abs=1e-5)


def test_locate_reads_the_cells_around_the_attention_peak_not_a_distant_lookalike() -> None:
    """Attention split between two objects (0.55 / 0.45): the estimate is the stronger one's
    position, not a point between them that holds neither."""
    grid = 5
    readout = SpatialReadout(8, n_queries=1, grid=grid)
    points = torch.zeros(1, grid * grid, DEPTH_CHANNELS)
    points[0, :, :3] = torch.tensor([0.5, 0.0, 0.0])
    points[0, 0] = torch.tensor([0.40, 0.10, 0.03, 0.3])  # top-left corner
    points[0, 24] = torch.tensor([0.70, -0.10, 0.03, 0.3])  # bottom-right corner
    attn = torch.zeros(1, 1, grid * grid)
    attn[0, 0, 24], attn[0, 0, 0] = 0.55, 0.45
    where = readout.locate(attn, points)[0, 0]
    assert torch.allclose(where, torch.tensor([0.70, -0.10, 0.03]), atol=1e-4)
    attn[0, 0, 24], attn[0, 0, 0] = 0.45, 0.55
    assert torch.allclose(readout.locate(attn, points)[0, 0], torch.tensor([0.40, 0.10, 0.03]),
                          atol=1e-4)
