"""Helpers for the core tests: a tiny open_clip ViT (registered from model_configs/) and data."""

from __future__ import annotations

import copy
from pathlib import Path

import open_clip
import torch

from safari_ros.config import ActionSpec, action_specs, load_config
from safari_ros.core.batch import StateBatch, TransitionBatch
from safari_ros.core.hparams import LearningConfig
from safari_ros.core.model import SafariModel, build_model

TINY = "SafariTest-ViT-Tiny"  # 4 blocks, width 64, 32x32 images, 5 tokens
open_clip.add_model_config(Path(__file__).parent / "model_configs")


def tiny_learning_dict(**backbone_overrides) -> dict:
    """The repository's learning: section, resized to the tiny ViT (split at 2 of 4 blocks)."""
    raw = copy.deepcopy(load_config()["learning"])
    # the whole image: the tests' cameras are tiny (test_view_and_readout.py tests the window)
    raw["backbone"].update(architecture=TINY, image_size=32, weights="", roi=None,
                           **backbone_overrides)
    raw["split_layer_k"] = 2
    raw["adapters"].update(task_layers=[2, 3], safety_layers=[3], bottleneck=8)
    raw["heads"]["hidden"] = 32
    # no spatial readout: on a random-init 2 x 2-patch ViT it only adds noise to the state
    # (test_view_and_readout.py tests it)
    raw["heads"]["spatial_queries"] = 0
    return raw


def tiny_hp(**scapo_overrides) -> LearningConfig:
    """LearningConfig for the tiny ViT; scapo keys overridable."""
    raw = tiny_learning_dict()
    raw["scapo"].update(scapo_overrides)
    return LearningConfig.from_dict(raw, episode_steps=load_config()["sim"]["episode_steps"])


def config_actions() -> list[ActionSpec]:
    """The configured action set."""
    return action_specs(load_config())


def make_tiny_model(hp: LearningConfig | None = None, actions=None, seed: int = 0) -> SafariModel:
    """A tiny SafariModel; `seed` fixes the head/adapter init (the backbone has its own seed)."""
    torch.manual_seed(seed)
    return build_model(hp or tiny_hp(), actions or config_actions())


def random_states(model: SafariModel, n: int, gen: torch.Generator) -> StateBatch:
    """Random but plausible states: prefix tokens of random images plus random extras."""
    images = torch.randn(n, 3, 32, 32, generator=gen)
    hp = model.hp.heads
    instr = torch.nn.functional.normalize(
        torch.randn(n, model.instruction_dim, generator=gen), dim=-1
    )
    return StateBatch(
        model.prefix(images),
        torch.rand(n, hp.depth_dim, generator=gen),
        torch.randn(n, hp.proprio_dim, generator=gen) * 0.1,
        instr,
    )


def random_batch(model: SafariModel, n: int, seed: int = 0) -> TransitionBatch:
    """A random TransitionBatch for `model`."""
    gen = torch.Generator().manual_seed(seed)
    a_count = len(model.actions)
    return TransitionBatch(
        state=random_states(model, n, gen),
        action=torch.randint(0, a_count, (n,), generator=gen),
        reward=torch.randn(n, generator=gen),
        cost=(torch.rand(n, generator=gen) < 0.3).float(),
        next_state=random_states(model, n, gen),
        done=(torch.rand(n, generator=gen) < 0.2).float(),
        success=(torch.rand(n, generator=gen) < 0.5).float(),
        behaviour_prob=torch.full((n,), 1.0 / a_count),
    )
