"""Bags from other tools: `ros2 bag record`-style standard types with jittered stamps, and ROS 1."""

from __future__ import annotations

import numpy as np
import pytest

from safari_ros.bags import ReadReport, read_episodes

from .synth import (
    INSTRUCTION,
    JOINTS,
    MS,
    T0,
    frame_depth_m,
    frame_rgb,
    standard_map,
    write_standard_bag,
)


def check_frames(steps, frames):
    """Each step carries the data of the frame its image came from."""
    assert [s.stamp_ns for s in steps] == [T0 + i * 100 * MS for i in frames]
    for step, i in zip(steps, frames, strict=True):
        np.testing.assert_array_equal(step.rgb, frame_rgb(i))
        np.testing.assert_allclose(step.depth, frame_depth_m(i), rtol=1e-6)
        assert step.joint_names == JOINTS
        np.testing.assert_array_equal(step.joint_positions, np.full(3, float(i)))
        assert (step.action, step.reward, step.cost) == (i % 8, float(i), float(i % 2))
        assert step.instruction == INSTRUCTION


def test_jittered_standard_bag_aligns_into_the_right_steps(tmp_path):
    write_standard_bag(tmp_path / "bag", n=10)
    report = ReadReport()
    episodes = read_episodes(tmp_path / "bag", standard_map(), report=report)
    assert len(episodes) == 1
    check_frames(episodes[0].steps, range(10))
    assert [s.index for s in episodes[0].steps] == list(range(10))
    assert not report.skipped


@pytest.mark.parametrize(("tolerance_s", "paired"), [(0.01, False), (0.04, True)])
def test_tolerance_is_honoured(tmp_path, tolerance_s, paired):
    late = {"depth": 4}  # frame 4's depth is stamped 25 ms late
    write_standard_bag(tmp_path / "bag", n=8,
                       jitter_ms=lambda s, i: 25.0 if late.get(s) == i else 1.0)
    report = ReadReport()
    episodes = read_episodes(tmp_path / "bag", standard_map(tolerance_s=tolerance_s),
                             report=report)
    frames = list(range(8)) if paired else [0, 1, 2, 3, 5, 6, 7]
    check_frames([s for e in episodes for s in e.steps], frames)
    assert report.skipped.get("unpaired_depth", 0) == (0 if paired else 1)


def test_offset_pairs_a_delayed_stream(tmp_path):
    """A reward published when the motion ends (60 ms after its frame) pairs via its offset."""
    write_standard_bag(tmp_path / "bag", n=5, jitter_ms=lambda s, i: 60.0 if s == "reward" else 0)
    unpaired = ReadReport()
    assert not read_episodes(tmp_path / "bag", standard_map(), report=unpaired)
    assert unpaired.skipped["unpaired_reward"] == 5
    episodes = read_episodes(tmp_path / "bag", standard_map(offsets_s={"reward": 0.06}))
    check_frames(episodes[0].steps, range(5))


def test_episodes_split_at_markers_and_gaps(tmp_path):
    write_standard_bag(tmp_path / "bag", n=9, markers=(3,))
    episodes = read_episodes(tmp_path / "bag", standard_map(episode_gap_s=0.25))
    assert [[s.index for s in e.steps] for e in episodes] == [[0, 1, 2], [0, 1, 2, 3, 4, 5]]
    assert [e.episode_id for e in episodes] == [0, 1]
    gap = tmp_path / "gap"
    write_standard_bag(gap, n=6, period_ms=300)
    assert len(read_episodes(gap, standard_map(episode_gap_s=0.25))) == 6


def test_ros1_bag_reads(tmp_path):
    path = tmp_path / "robot.bag"
    write_standard_bag(path, n=6, ros1=True)
    episodes = read_episodes(path, standard_map())
    check_frames(episodes[0].steps, range(6))
