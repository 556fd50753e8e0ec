"""Steps written by BagRecorder come back equal from read_episodes (MCAP and sqlite3)."""

from __future__ import annotations

import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import WriterError

from safari_ros.bags import BagRecorder, ReadReport, TopicMap, read_episodes, write_episodes

from .synth import make_episodes


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_written_episodes_read_back_equal(tmp_path, storage):
    episodes = make_episodes(n_episodes=3, n_steps=4)
    bag = write_episodes(tmp_path / "bag", episodes, storage=storage)
    report = ReadReport()
    got = read_episodes(bag, report=report)
    assert got == episodes
    assert [len(e) for e in got] == [4, 4, 4]
    assert got[0].steps[0].stamps["depth"] == episodes[0].steps[0].stamps["depth"]
    assert report.steps == 12 and report.episodes == 3 and not report.skipped


def test_bag_uses_the_live_topic_names_and_types(tmp_path):
    bag = write_episodes(tmp_path / "bag", make_episodes(1, 2))
    with AnyReader([bag]) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
    assert topics == {
        "/camera/color/image_raw": "sensor_msgs/msg/Image",
        "/camera/depth/image_raw": "sensor_msgs/msg/Image",
        "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
        "/joint_states": "sensor_msgs/msg/JointState",
        "/safari/instruction": "std_msgs/msg/String",
        "/safari/shield/decision": "safari_msgs/msg/ShieldDecision",
        "/safari/feedback": "safari_msgs/msg/Feedback",
    }
    assert TopicMap.load().topic("transition") == "/safari/transition"


def test_a_change_is_noticed(tmp_path):
    """The equality the round trip relies on is strict enough to fail."""
    episodes = make_episodes(1, 3)
    got = read_episodes(write_episodes(tmp_path / "bag", episodes))
    got[0].steps[1].rgb[0, 0, 0] ^= 1
    assert got != episodes


def test_recorder_keeps_what_was_written_when_the_block_raises(tmp_path):
    episodes = make_episodes(2, 3)
    with pytest.raises(RuntimeError, match="simulator died"), \
            BagRecorder(tmp_path / "bag") as recorder:
        recorder.write_episode(episodes[0])
        raise RuntimeError("simulator died")
    assert read_episodes(tmp_path / "bag") == episodes[:1]


def test_recorder_never_overwrites_a_bag(tmp_path):
    write_episodes(tmp_path / "bag", make_episodes(1, 1))
    with pytest.raises(WriterError, match="exists"):
        write_episodes(tmp_path / "bag", make_episodes(1, 1))


def test_recorder_refuses_a_second_type_on_a_topic(tmp_path):
    from safari_ros.bags.messages import make_scalar

    with BagRecorder(tmp_path / "bag") as recorder:
        recorder.write("/x", make_scalar("std_msgs/msg/String", "a"), 1)
        with pytest.raises(TypeError, match="std_msgs/msg/String"):
            recorder.write("/x", make_scalar("std_msgs/msg/Int32", 1), 2)
