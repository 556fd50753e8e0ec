"""`safari_pretrain --preset tiny|cpu|full` (issue 14): a run of a known size is one flag."""

from __future__ import annotations

import json

import pytest

from safari_ros.config import ConfigError, load_config
from safari_ros.evaluation.settings import load_evaluation_config
from safari_ros.pretrain import cli
from safari_ros.pretrain.cli import PRESET_NAMES, build_parser, load_preset, main


def config_of(*argv):
    """The config and options a command line resolves to (nothing runs)."""
    args = build_parser().parse_args(list(argv))
    return cli._config(args), args


def test_every_preset_resolves():
    for name in PRESET_NAMES:
        cfg, _ = config_of("train", "bag", "--out", "run", "--preset", name)
        assert cfg["learning"]["pretrain"]["epochs"] >= 1


def test_tiny_builds_the_evaluation_test_presets_model():
    cfg, args = config_of("demos", "--out", "bag", "--preset", "tiny")
    overrides = load_evaluation_config()["presets"]["test"]["overrides"]
    for key in ("learning.backbone.architecture", "learning.split_layer_k",
                "learning.adapters.task_layers", "sim.camera.width"):
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == overrides[f"tabletop.{key}"], key
    assert cfg["learning"]["backbone"]["weights"] == ""
    assert args.episodes_per_template == load_preset("tiny")["demos"]["episodes_per_template"]


def test_options_and_set_win_over_the_preset():
    cfg, args = config_of("demos", "--out", "bag", "--preset", "tiny", "--episodes-per-template",
                          "5", "--set", "sim.episode_steps=7")
    assert args.episodes_per_template == 5 and cfg["sim"]["episode_steps"] == 7
    cfg, _ = config_of("train", "bag", "--out", "run")
    assert cfg["learning"] == load_config()["learning"]  # no preset: the config as it is


def test_unknown_presets_and_options_are_refused(tmp_path, monkeypatch):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "bag", "--out", "run", "--preset", "huge"])
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset("huge")
    bad = tmp_path / "presets.yaml"
    bad.write_text("presets:\n  tiny:\n    demos: {no_such_option: 1}\n")
    monkeypatch.setattr(cli, "load_preset", lambda name: load_preset(name, bad))
    with pytest.raises(ConfigError, match="no_such_option"):
        config_of("demos", "--out", "bag", "--preset", "tiny")


def test_a_tiny_run_is_one_flag(tmp_path, capsys):
    bag, run = tmp_path / "bag", tmp_path / "run"
    assert main(["demos", "--preset", "tiny", "--out", str(bag)]) == 0
    demos = json.loads(capsys.readouterr().out)
    assert demos["episodes"] == 3 * load_preset("tiny")["demos"]["episodes_per_template"]
    assert main(["train", str(bag), "--preset", "tiny", "--out", str(run), "--cache-dir",
                 str(tmp_path / "cache"), "--no-progress"]) == 0
    report = json.loads((run / "pretrain_report.json").read_text())
    assert report["architecture"] == "SafariEval-ViT-Tiny"
    assert report["epochs_done"] == load_preset("tiny")["set"]["learning.pretrain.epochs"]
    assert report["settings"]["batch_size"] == 32
    assert report["labels"] is None  # recorded actions: nothing labelled
