"""A small SAFARI stack for the node tests: the tiny test ViT, 64x64 camera, short episodes."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from safari_ros.config import deep_merge

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "tabletop.yaml"
# Where a failing test's node logs are copied (ignored by git): pytest keeps only its last three
# temporary folders, and a failure seen once under load must be diagnosable afterwards.
KEPT_LOGS = REPO / "test-logs"
# Node log folders by the test module that started them (see conftest.py's report hook).
LOG_DIRS: dict[str, list[Path]] = {}


def start_supervisor(specs: list, run_dir: Path, log_dir: Path) -> Any:
    """Start the nodes with their output in log_dir, and remember log_dir for the current test
    module so that a failing test of it keeps the logs."""
    from safari_ros.bringup import Supervisor

    # "test/nodes/test_x.py::test_y (setup)": set by pytest while a test or fixture runs.
    module = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[0]
    LOG_DIRS.setdefault(module, []).append(log_dir)
    sup = Supervisor(specs, run_dir, log_dir=log_dir)
    sup.start()
    return sup


def tiny_stack_config(folder: Path, sections: dict[str, Any] | None = None,
                      **learner_params: Any) -> Path:
    """Write a config for a fast stack into folder and return its path; `sections` are merged
    into it (as an `extends` overlay would: e.g. the HRI domain's `hri` section)."""
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
    path.write_text(yaml.safe_dump(deep_merge(cfg, sections)))
    return path


@contextmanager
def one_node(folder: Path, name: str, use_sim: bool,
             sections: dict[str, Any] | None = None) -> Iterator[tuple[dict, Any, Any]]:
    """Start the tiny stack's node `name` as its own process (logs in folder/logs) beside a probe
    node in this process; yields (config, supervisor, probe) and tears all down. `sections`:
    see tiny_stack_config."""
    import rclpy
    from rclpy.node import Node

    from safari_ros.config import load_config
    from safari_ros.graph import node_specs

    cfg = load_config(tiny_stack_config(folder, sections))
    specs = [s for s in node_specs(cfg, {"use_sim": str(use_sim).lower()}) if s.name == name]
    sup = start_supervisor(specs, folder, folder / "logs")
    rclpy.init()
    probe = Node(f"{name}_probe")
    try:
        yield cfg, sup, probe
    finally:
        probe.destroy_node()
        rclpy.shutdown()
        sup.stop()
