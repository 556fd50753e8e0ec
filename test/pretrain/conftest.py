"""Fixtures of the pre-training tests: a config for the tiny test ViT with a 32x32 camera, and one
demonstration bag recorded by the simulator's oracle, shared by the whole session."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch
import yaml
from core.core_helpers import tiny_learning_dict

from safari_ros.config import load_config
from safari_ros.pretrain import generate_demos

MODEL_CONFIGS = Path(__file__).resolve().parents[1] / "core" / "model_configs"
IMAGE_SIZE = 32  # the tiny ViT's input: no resize, fast rendering
open_clip.add_model_config(MODEL_CONFIGS)


def tiny_config() -> dict:
    """The repository config with the tiny ViT and a 32x32 camera."""
    cfg = load_config()
    cfg.pop("_path")
    cfg["learning"] = tiny_learning_dict()
    cfg["sim"]["camera"].update(width=IMAGE_SIZE, height=IMAGE_SIZE)
    return cfg


@pytest.fixture(scope="session")
def config_path(tmp_path_factory) -> Path:
    """tiny_config() written as YAML (what the command line reads)."""
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    return path


@pytest.fixture(scope="session")
def demo_bag(tmp_path_factory) -> Path:
    """36 oracle episodes (12 per template) with random actions and unsafe drifts."""
    path = tmp_path_factory.mktemp("demos") / "bag"
    summary = generate_demos(tiny_config(), path, episodes_per_template=12, seed=0)
    assert summary.costly_steps > 20 and summary.successes > 20, summary
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run as fast on one thread, and the test machines' cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
