"""launch/tabletop.launch.py and the sandbox bring-up start the same nodes, same parameters."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from safari_ros.bringup import Supervisor, node_command, parse_launch_args, write_params_file
from safari_ros.config import ConfigError, load_config
from safari_ros.graph import node_specs

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "tabletop.launch.py"
CONFIG = REPO / "config" / "tabletop.yaml"


def load_launch_module():
    spec = importlib.util.spec_from_file_location("tabletop_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ARGUMENT_SETS = [
    {},
    {"use_sim": "false", "device": "cuda", "checkpoint": "/tmp/a.safetensors"},
    {"moveit": "true", "record": "true", "weights": "/w/clip.safetensors", "run_dir": "/tmp/r"},
]


@pytest.mark.parametrize("given", ARGUMENT_SETS)
def test_launch_file_and_bringup_agree(tmp_path, given):
    launch = load_launch_module()
    from_launch = launch.specs_for(str(CONFIG), given)
    # What the bring-up actually hands each process: its command line and params file.
    sup = Supervisor(node_specs(load_config(CONFIG), given), tmp_path)
    assert [s.name for s in sup.specs] == [s.name for s in from_launch]
    for spec, launched in zip(sup.specs, from_launch, strict=True):
        params_file = write_params_file(spec, tmp_path)
        cmd = node_command(spec, params_file)
        assert cmd[cmd.index("-m") + 1] == f"safari_ros.nodes.{launched.executable}"
        assert f"__node:={launched.name}" in cmd
        written = yaml.safe_load(params_file.read_text())[launched.name]["ros__parameters"]
        assert written == launched.parameters
        assert launched.parameters["config"] == str(CONFIG)


def test_use_sim_gates_the_simulator_and_sim_time():
    cfg = load_config(CONFIG)
    with_sim = {s.name: s for s in node_specs(cfg, {"use_sim": "true"})}
    without = {s.name: s for s in node_specs(cfg, {"use_sim": "false"})}
    assert "sim_node" in with_sim and "sim_node" not in without
    assert all(s.parameters["use_sim_time"] is True for s in with_sim.values())
    assert all(s.parameters["use_sim_time"] is False for s in without.values())
    assert with_sim["shield_node"].lifecycle


def test_arguments_reach_the_parameters_typed():
    specs = {s.name: s for s in node_specs(load_config(CONFIG), ARGUMENT_SETS[2])}
    assert specs["shield_node"].parameters["use_moveit"] is True
    assert specs["learner_node"].parameters["record"] is True
    assert specs["policy_node"].parameters["backbone_weights"] == "/w/clip.safetensors"


def test_unknown_launch_argument_is_refused():
    with pytest.raises(ConfigError, match="unknown launch argument"):
        node_specs(load_config(CONFIG), {"use_simm": "true"})
    with pytest.raises(SystemExit):
        parse_launch_args(["use_sim=true"])


def test_every_node_is_installed_where_ros2_run_looks():
    lib = REPO / "install" / "safari_ros" / "lib" / "safari_ros"
    if not lib.is_dir():
        pytest.skip("workspace not built (scripts/setup.sh)")
    entry_points = "".join(p.read_text() for p in (REPO / "install" / "safari_ros").rglob(
        "entry_points.txt"))
    for spec in node_specs(load_config(CONFIG), {"use_sim": "true"}):
        script = lib / spec.executable
        assert script.is_file(), f"no console script {script}"
        assert f"{spec.executable} = safari_ros.nodes.{spec.executable}:main" in entry_points
        module = REPO / "src" / "safari_ros" / "safari_ros" / "nodes" / f"{spec.executable}.py"
        tree = ast.parse(module.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)


def test_launch_description_builds_where_launch_is_installed():
    pytest.importorskip("launch_ros", reason="launch_ros exists only in a ROS 2 distribution")
    from launch import LaunchContext

    launch = load_launch_module()
    description = launch.generate_launch_description()
    context = LaunchContext()
    for entity in description.entities:
        entity.visit(context)
    assert context.launch_configurations["use_sim"] == "true"


def test_the_learner_runs_niced_and_a_bad_niceness_is_refused(tmp_path):
    cfg = load_config(CONFIG)
    specs = {s.name: s for s in node_specs(cfg)}
    # learning yields the CPU to the control path; the shield is never niced
    assert specs["learner_node"].nice > 0 and specs["shield_node"].nice == 0
    cmd = node_command(specs["learner_node"], tmp_path / "p.yaml")
    assert cmd[:3] == ["nice", "-n", str(specs["learner_node"].nice)]
    assert node_command(specs["shield_node"], tmp_path / "p.yaml")[0] != "nice"
    cfg["nodes"]["policy_node"]["nice"] = -5
    with pytest.raises(ConfigError, match="nice"):
        node_specs(cfg)
