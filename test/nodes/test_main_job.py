"""The main job end to end on a tiny stack: demonstrations -> pre-training -> online episodes
through the real nodes -> report.json and learning_curves.png."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (scripts/setup.sh)")
pytest.importorskip("safari_msgs", reason="needs the colcon-built safari_msgs")

from nodes.stack_support import tiny_stack_config
from safari_ros import tabletop_run
from safari_ros.report import moving_mean, summarise


def test_moving_mean_and_summary_by_hand():
    assert np.allclose(moving_mean([1, 0, 1, 1], window=2), [1.0, 0.5, 0.5, 1.0])
    rows = [{"success": s, "return": r, "cumulative_violations": v, "interventions": i,
             "lagrange_multiplier": lam, "updates": u, "policy_entropy": h}
            for s, r, v, i, lam, u, h in [(False, -1.0, 2, 3, 0.0, 5, 2.0),
                                          (True, 3.0, 2, 1, 0.5, 9, 0.25)]]
    summary = summarise(rows)
    assert summary["success_rate"] == 0.5 and summary["mean_return"] == 1.0
    assert summary["total_interventions"] == 4 and summary["total_violations"] == 2
    assert summary["final_lagrange_multiplier"] == 0.5 and summary["learner_updates"] == 9
    assert summary["final_policy_entropy"] == 0.25


def test_previous_run_is_set_aside_not_deleted(tmp_path):
    assert tabletop_run.set_aside_previous_run(tmp_path) is None
    (tmp_path / "replay" / "20260101-000000").mkdir(parents=True)
    (tmp_path / "replay" / "20260101-000000" / "x.mcap").write_bytes(b"bag")
    (tmp_path / "report.json").write_text("{}")
    (tmp_path / "pretrain").mkdir()  # reused by the next run: stays
    moved = tabletop_run.set_aside_previous_run(tmp_path)
    assert moved is not None and moved.parent == tmp_path / "previous"
    assert (moved / "replay" / "20260101-000000" / "x.mcap").read_bytes() == b"bag"
    assert (moved / "report.json").exists()
    assert not (tmp_path / "replay").exists() and not (tmp_path / "report.json").exists()
    assert (tmp_path / "pretrain").is_dir()


def test_main_job_pretrains_learns_online_deploys_and_reports(tmp_path, capsys):
    # with the critics' warm-up on the demonstrations before online learning
    config = tiny_stack_config(tmp_path, {"learning": {"scapo": {"critic_warmup_steps": 20}}})
    run_dir = tmp_path / "run"
    code = tabletop_run.main(["--config", str(config), "--episodes", "2",
                              "--pretrain-episodes", "2", "--deploy-episodes", "2",
                              "--run-dir", str(run_dir)])
    assert code == 0
    out = capsys.readouterr().out
    assert "episode    2/2" in out
    report = json.loads((run_dir / "report.json").read_text())
    assert [r["episode"] for r in report["episodes"]] == [1, 2]
    assert all(r["steps"] > 0 for r in report["episodes"])
    assert report["summary"]["episodes"] == 2
    # The nodes started from the offline pre-trained checkpoint.
    pretrained = run_dir / "pretrain" / "train" / "adapters.safetensors"
    assert pretrained.is_file()
    assert report["meta"]["launch_arguments"]["checkpoint"] == str(pretrained.resolve())
    assert report["meta"]["pretrain"]["heldout"]
    # ... on demonstrations recorded by two processes side by side (run.demo_workers), one bag
    # each, and the learner learned beside them
    bags = [run_dir / "pretrain" / "demos" / f"part-{i}" for i in range(2)]
    assert all((b / "metadata.yaml").is_file() for b in bags)
    assert (run_dir / "pretrain" / "demos" / "recorded").read_text().split() == [
        "part-0", "part-1"]
    assert report["meta"]["launch_arguments"]["demonstrations"].split(os.pathsep) == [
        str(b.resolve()) for b in bags]
    learner_log = (run_dir / "logs" / "learner_node.log").read_text()
    assert "from 2 bag(s)" in learner_log
    assert "critics warmed up on the demonstrations" in learner_log
    assert (run_dir / "learning_curves.png").stat().st_size > 10_000
    # Deployment: v1 is the pre-trained checkpoint, final the learner's last save, both on the
    # same seeds of both splits; the table is the last thing printed before the paths.
    deployment = report["deployment"]
    assert deployment["checkpoints"]["v1"]["path"] == str(pretrained.resolve())
    final = deployment["checkpoints"]["final"]
    assert final["path"].startswith(str((run_dir / "checkpoints").resolve()))
    assert final["version"] > deployment["checkpoints"]["v1"]["version"]
    for split in ("train", "heldout"):
        seeds = [[e["env_seed"] for e in deployment["splits"][split][k]["episodes"]]
                 for k in ("v1", "final")]
        assert seeds[0] == seeds[1] and len(seeds[0]) == 2
        assert "gain" in deployment["splits"][split]
    assert "deployment: 2 episodes per split" in out and "heldout  gain" in out


@pytest.mark.slow
def test_main_job_stops_the_stack_and_reports_when_killed(tmp_path):
    """SIGTERM (or Ctrl-C) mid-run: every node is stopped and the episodes so far are reported."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tiny_stack_config(tmp_path)
    run_dir = tmp_path / "run"
    # start_new_session: the signal reaches the main job alone, as `kill <pid>` would
    proc = subprocess.Popen(
        [sys.executable, "-m", "safari_ros.tabletop_run", "--config", str(config),
         "--episodes", "50", "--pretrain-episodes", "0", "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = ""
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            if line.startswith("episode    1/50") or time.monotonic() > deadline:
                break
        assert line.startswith("episode    1/50"), "the first episode never finished"
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, rest[-2000:]
    report = json.loads((run_dir / "report.json").read_text())
    assert 1 <= report["summary"]["episodes"] < 50
    left = subprocess.run(["pgrep", "-f", str(run_dir / "params")], capture_output=True,
                          text=True, check=False).stdout.split()
    assert not left, f"nodes still running after the main job stopped: {left}"
