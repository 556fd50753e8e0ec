"""Pre-training from the logs of a robot that did not run SAFARI (issue 14): simulated
teleoperation (smooth joint-space motions, never the primitives), written with mcap's ROS 2 writer,
labelled with primitives from the recorded motion and checked against the simulator's truth."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import yaml
from bags.teleop import NONE, write_teleop_log
from conftest import tiny_config

from safari_ros.bags import MissingTopic, ReadReport, TopicMap, read_episodes, read_motion_logs
from safari_ros.pretrain.cli import main
from safari_ros.pretrain.labelling import MotionLabeller, annotation_path

TOPICS = TopicMap.load().for_motion_labels()


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Two teleoperation logs of three episodes (one per template): one with the arm's commands
    and an annotation file, one with neither (motion from the joint states alone)."""
    folder = tmp_path_factory.mktemp("teleop")
    cfg = tiny_config()
    return {
        "commands": write_teleop_log(folder / "commands.mcap", cfg, episodes=3, seed=1),
        "joints": write_teleop_log(folder / "joints.mcap", cfg, episodes=3, seed=2,
                                   commands=False, annotate=False),
    }


@pytest.fixture(scope="module")
def labelled(logs):
    """name -> (labeller, windows) of each log."""
    labeller = MotionLabeller(tiny_config(), TOPICS.labelling)
    out = {}
    for name, truth in logs.items():
        (log,) = read_motion_logs(truth.path, TOPICS)
        out[name] = (labeller, labeller.label_log(log, TOPICS))
    return out


def scores(truth, labeller, windows):
    """Label accuracy where the truth is one motion, and what happened to the other windows."""
    rows = [(truth.intent(w.start_ns, w.end_ns),
             labeller.names[w.action] if w.action is not None else None) for w in windows]
    defined = [(t, lab) for t, lab in rows if t not in (None, NONE)]
    labelled = [(t, lab) for t, lab in defined if lab is not None]
    return {
        "accuracy": sum(t == lab for t, lab in labelled) / len(labelled),
        "coverage": sum(t == lab for t, lab in defined) / len(defined),
        "none": Counter(lab for t, lab in rows if t == NONE),
        "labelled": len(labelled),
    }


@pytest.mark.parametrize("name", ["commands", "joints"])
def test_labels_match_the_operators_motions(logs, labelled, name):
    labeller, windows = labelled[name]
    s = scores(logs[name], labeller, windows)
    assert s["labelled"] > 50
    assert s["accuracy"] >= 0.9, s
    assert s["coverage"] >= 0.65, s
    # Diagonal and double-speed moves are no primitive: skipped, not guessed.
    assert sum(s["none"].values()) >= 3 and s["none"][None] >= 0.9 * sum(s["none"].values()), s
    assert all(w.residual <= 0.5 for w in windows if w.action is not None)
    assert {w.reason for w in windows if w.action is None} <= {"no_primitive", "ambiguous",
                                                               "no_joint_states", "no_frame"}


def test_commands_are_what_is_explained(labelled):
    labeller, with_commands = labelled["commands"]
    _, joints_only = labelled["joints"]
    moves = [w for w in with_commands
             if w.action is not None and labeller.names[w.action].startswith("move_")]
    assert moves and all(w.commanded for w in moves)  # the arm's commands were recorded
    assert not any(w.commanded for w in joints_only)


def test_costs_come_from_the_shields_checks_on_the_recorded_motion(logs, labelled):
    """The shield's limits carry margins, so every step the simulator found costly is costly
    here too (the drifts down onto the table), and the checks that fired are named."""
    for name, truth in logs.items():
        _, windows = labelled[name]
        steps = [w for w in windows if w.action is not None]
        sim_costly = [w for w in steps if truth.costly(w.start_ns, w.end_ns)]
        assert sim_costly, name
        assert all(w.cost == 1.0 for w in sim_costly)
        assert all(w.cost == float(any(w.cost_sources.values())) for w in steps)
    sources = Counter(k for _, ws in labelled.values() for w in ws for k, v in
                      w.cost_sources.items() if v)
    assert sources["workspace"] >= 1  # the table, under workspace as in ShieldDecision


def test_annotations_give_episodes_instruction_and_success(logs):
    truth = logs["commands"]
    assert annotation_path(truth.path) == truth.path.with_name("commands.annotations.yaml")
    report = ReadReport()
    episodes = MotionLabeller(tiny_config(), TOPICS.labelling).episodes(
        truth.path, TOPICS, skip_bad=False, report=report)
    assert len(episodes) == 3
    assert [e.instruction for e in episodes] == [e["instruction"] for e in truth.episodes]
    assert [e.success for e in episodes] == [e["success"] for e in truth.episodes]
    assert any(e.success for e in episodes)  # some behaviour to clone
    for e in episodes:
        assert [s.index for s in e.steps] == list(range(len(e)))
        assert e.steps[-1].done and all(s.action == s.proposed_action for s in e.steps)
    assert report.labels["labelled"] == sum(len(e) for e in episodes)
    assert report.labels["annotated_bags"] == 1


def test_without_annotations_the_log_is_one_stream_of_unknown_success(logs):
    report = ReadReport()
    episodes = MotionLabeller(tiny_config(), TOPICS.labelling).episodes(
        logs["joints"].path, TOPICS, skip_bad=False, report=report)
    assert len(episodes) == 3  # cut at the quiet gaps between recordings
    assert not any(e.success for e in episodes)  # no behaviour cloning, alignment and safety
    assert all(s.instruction == "" for e in episodes for s in e.steps)
    assert report.labels["unannotated_bags"] == 1


def test_steps_outside_the_annotated_episodes_are_skipped(logs, tmp_path):
    truth = logs["commands"]
    bag = shutil.copy(truth.path, tmp_path / "log.mcap")
    doc = yaml.safe_load(annotation_path(truth.path).read_text())
    doc["episodes"] = doc["episodes"][1:2]  # only the second episode
    (tmp_path / "log.annotations.yaml").write_text(yaml.safe_dump(doc))
    labeller = MotionLabeller(tiny_config(), TOPICS.labelling)
    report = ReadReport()
    episodes = labeller.episodes(bag, TOPICS, skip_bad=False, report=report)
    assert len(episodes) == 1 and episodes[0].instruction == truth.episodes[1]["instruction"]
    assert report.skipped["unlabelled_outside_episodes"] > 20
    # the annotation is part of what the feature cache keys on
    before = labeller.fingerprint(bag)
    doc["episodes"][0]["success"] = not doc["episodes"][0]["success"]
    (tmp_path / "log.annotations.yaml").write_text(yaml.safe_dump(doc))
    assert labeller.fingerprint(bag) != before


def test_a_safari_topic_map_names_the_way_out(logs):
    with pytest.raises(MissingTopic, match="--label-from-motion"):
        read_episodes(logs["joints"].path)


def run(bags, out, cache, *extra):
    """`safari_pretrain train` on the tiny preset; (status, report or None)."""
    status = main(["train", *map(str, bags), "--preset", "tiny", "--out", str(out),
                   "--cache-dir", str(cache), "--no-progress", *map(str, extra)])
    path = out / "pretrain_report.json"
    return status, json.loads(path.read_text()) if path.exists() else None


def test_pretraining_on_labelled_logs_reports_the_labels(logs, tmp_path, capsys):
    bags = [t.path for t in logs.values()]
    status, report = run(bags, tmp_path / "run", tmp_path / "cache", "--label-from-motion")
    assert status == 0
    labels = report["labels"]
    assert labels["labelled"] + labels["skipped"] == labels["steps"]
    assert labels["skipped_by_reason"]["no_primitive"] >= 3
    assert 0 < labels["residual"]["median"] <= labels["residual"]["max"] <= 0.5
    assert labels["unexplained_residual"]["median"] > 0.5
    assert labels["annotated_bags"] == 1 and labels["unannotated_bags"] == 1
    assert report["data"]["steps"] == labels["labelled"]
    assert report["heldout"]["costly_steps"] >= 0
    out, err = capsys.readouterr()
    assert json.loads(out)["labels"]["labelled"] == labels["labelled"]
    for bag in bags:  # what each bag left out, and why
        assert f"{bag}: skipped" in err
    assert "no primitive explains" in err

    # the same bags again: labels and counts come from the cache, identical
    status, again = run(bags, tmp_path / "again", tmp_path / "cache", "--label-from-motion")
    assert again["feature_cache"]["hits"] == [str(b) for b in bags]
    assert again["labels"] == labels


def test_a_cut_log_is_named_or_salvaged_with_a_summary(logs, tmp_path, capsys):
    data = logs["joints"].path.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    status, _ = run([cut], tmp_path / "strict", tmp_path / "cache", "--label-from-motion")
    assert status == 2 and str(cut) in capsys.readouterr().err
    status, report = run([cut], tmp_path / "lenient", tmp_path / "cache", "--label-from-motion",
                         "--skip-bad")
    assert status == 0
    assert report["data"]["skipped_per_bag"][str(cut)]["skipped"]["truncated"] == 1
    err = capsys.readouterr().err
    assert f"{cut}: skipped" in err and "end early" in err and "salvaged" in err
    assert 0 < report["labels"]["labelled"] < np.inf
