"""A small SAFARI stack for the node tests: the tiny test ViT, 64x64 camera, short episodes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "tabletop.yaml"


def tiny_stack_config(folder: Path, **learner_params: Any) -> Path:
    """Write a config for a fast stack into folder and return its path."""
    from core.core_helpers import tiny_learning_dict  # the tiny ViT the core tests use

    cfg = yaml.safe_load(CONFIG.read_text())
    learning = tiny_learning_dict(model_config_dir=str(REPO / "test" / "core" / "model_configs"))
    learning["scapo"]["batch_size"] = 8
    cfg["learning"] = copy.deepcopy(learning)
    cfg["sim"]["camera"].update(width=64, height=64)
    cfg["sim"]["episode_steps"] = 10
    cfg["nodes"]["learner_node"]["parameters"].update(
        {"checkpoint_every_updates": 5, "status_period_s": 0.2, **learner_params})
    path = folder / "stack.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@contextmanager
def one_node(folder: Path, name: str, use_sim: bool) -> Iterator[tuple[dict, Any, Any]]:
    """Start the tiny stack's node `name` as its own process (logs in folder/logs) beside a probe
    node in this process; yields (config, supervisor, probe) and tears all down."""
    import rclpy
    from rclpy.node import Node

    from safari_ros.bringup import Supervisor
    from safari_ros.config import load_config
    from safari_ros.graph import node_specs

    cfg = load_config(tiny_stack_config(folder))
    specs = [s for s in node_specs(cfg, {"use_sim": str(use_sim).lower()}) if s.name == name]
    sup = Supervisor(specs, folder, log_dir=folder / "logs")
    sup.start()
    rclpy.init()
    probe = Node(f"{name}_probe")
    try:
        yield cfg, sup, probe
    finally:
        probe.destroy_node()
        rclpy.shutdown()
        sup.stop()
