"""Bad input: a clear error naming bag, topic and time; with skip_bad the valid part, counted."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from safari_ros.bags import (
    CorruptBag,
    MissingMetadata,
    MissingTopic,
    ReadReport,
    TruncatedBag,
    UnknownMessageType,
    UnsupportedEncoding,
    read_episodes,
    write_episodes,
)
from safari_ros.bags.messages import build, make_image
from safari_ros.bags.typestore import safari_typestore

from .synth import MS, T0, make_episodes, standard_map, write_standard_bag

# 64x64 RGB-D steps: 28 KiB each, so 60 steps fill a few 1 MiB MCAP chunks.
SIZE = (64, 64)


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory):
    episodes = make_episodes(n_episodes=2, n_steps=30, size=SIZE)
    return write_episodes(tmp_path_factory.mktemp("bags") / "bag", episodes), episodes


def cut(src, dst, nbytes):
    """Copy a rosbag2 bag and cut `nbytes` off the end of its .mcap file."""
    shutil.copytree(src, dst)
    mcap = next(dst.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) - nbytes])
    return mcap


@pytest.mark.parametrize("what", ["directory", "bare_mcap", "no_metadata"])
def test_truncated_mcap_is_named_then_salvaged(long_bag, tmp_path, what):
    src, episodes = long_bag
    mcap = cut(src, tmp_path / "cut", 300_000)
    if what == "no_metadata":  # the recorder died before writing metadata.yaml
        (tmp_path / "cut" / "metadata.yaml").unlink()
    path = mcap if what == "bare_mcap" else tmp_path / "cut"

    with pytest.raises(CorruptBag) as raised:
        read_episodes(path)
    assert str(path) in str(raised.value)

    report = ReadReport()
    got = read_episodes(path, skip_bad=True, report=report)
    steps = [s for e in got for s in e.steps]
    originals = [s for e in episodes for s in e.steps]
    assert 0 < len(steps) < len(originals)
    assert steps == originals[: len(steps)]  # the complete part, unchanged
    assert report.skipped["truncated"] == 1
    if what == "directory":  # metadata.yaml tells how many messages there were
        assert report.skipped["lost_messages"] > 0
    assert report.skipped.get("missing_metadata", 0) == (what == "no_metadata")
    assert any("salvaged" in p for p in report.problems)


def test_missing_metadata_is_named_as_such(long_bag, tmp_path):
    """A complete .mcap whose directory lacks metadata.yaml: the missing file is named (not
    "truncated"), and with skip_bad every message is read from the .mcap alone."""
    src, episodes = long_bag
    shutil.copytree(src, tmp_path / "bag")
    (tmp_path / "bag" / "metadata.yaml").unlink()
    with pytest.raises(MissingMetadata) as raised:
        read_episodes(tmp_path / "bag")
    assert str(tmp_path / "bag" / "metadata.yaml") in str(raised.value)
    assert "is missing" in str(raised.value)

    report = ReadReport()
    assert read_episodes(tmp_path / "bag", skip_bad=True, report=report) == episodes
    assert dict(report.skipped) == {"missing_metadata": 1}
    assert "metadata.yaml" in report.problems[0]


def test_a_frame_is_counted_once_under_its_first_missing_part(tmp_path):
    """Frame 2's action, reward and cost all come too late: one frame left out, counted once."""
    late = ("action", "reward", "cost")
    write_standard_bag(tmp_path / "bag", n=5,
                       jitter_ms=lambda s, i: 60.0 if s in late and i == 2 else 0.0)
    report = ReadReport()
    steps = [s for e in read_episodes(tmp_path / "bag", standard_map(), report=report)
             for s in e.steps]
    assert len(steps) == 4
    assert dict(report.skipped) == {"unpaired_action": 1}


def test_truncated_sqlite_is_a_clear_error(tmp_path):
    bag = write_episodes(tmp_path / "bag", make_episodes(1, 3), storage="sqlite3")
    db = next(bag.glob("*.db3"))
    db.write_bytes(db.read_bytes()[:2000])
    with pytest.raises(CorruptBag, match=str(bag)):
        read_episodes(bag)


def test_missing_topic_is_named(tmp_path):
    write_standard_bag(tmp_path / "bag", n=4)
    tmap = standard_map().with_topics(depth="/camera/depth/nowhere")
    with pytest.raises(MissingTopic, match="/camera/depth/nowhere") as raised:
        read_episodes(tmp_path / "bag", tmap)
    assert raised.value.topic == "/camera/depth/nowhere"

    report = ReadReport()
    episodes = read_episodes(tmp_path / "bag", tmap, skip_bad=True, report=report)
    assert len(episodes[0].steps) == 4
    assert all(s.depth is None for s in episodes[0].steps)
    assert report.skipped["missing_topic"] == 1


def test_missing_image_topic_fails_even_with_skip_bad(tmp_path):
    write_standard_bag(tmp_path / "bag", n=2)
    with pytest.raises(MissingTopic, match="/cam/nothing"):
        read_episodes(tmp_path / "bag", standard_map().with_topics(image="/cam/nothing"),
                      skip_bad=True)


def test_unknown_message_type_is_named(tmp_path):
    store = safari_typestore()
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/rgb", "sensor_msgs/msg/Image", typestore=store)
        twist = writer.add_connection("/action", "geometry_msgs/msg/Twist", typestore=store)
        for i in range(3):
            t = T0 + i * 100 * MS
            img = make_image(np.zeros((4, 4, 3), np.uint8), t)
            writer.write(conn, t, store.serialize_cdr(img, img.__msgtype__))
            msg = build("geometry_msgs/msg/Twist")
            writer.write(twist, t, store.serialize_cdr(msg, msg.__msgtype__))
    tmap = standard_map().with_topics(depth=None, joint_states=None, instruction=None,
                                      reward=None, cost=None)
    with pytest.raises(UnknownMessageType, match="geometry_msgs/msg/Twist") as raised:
        read_episodes(tmp_path / "bag", tmap)
    assert raised.value.topic == "/action"
    report = ReadReport()
    episodes = read_episodes(tmp_path / "bag", tmap, skip_bad=True, report=report)
    assert len(episodes[0].steps) == 3 and episodes[0].steps[0].action is None
    assert report.skipped["unknown_type"] == 1


def bag_with_bad_frames(path, bad):
    """Colour frames; those in `bad` are yuv422 (unexpected encoding)."""
    store = safari_typestore()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/rgb", "sensor_msgs/msg/Image", typestore=store)
        for i in range(5):
            t = T0 + i * 100 * MS
            img = make_image(np.full((4, 4, 3), i, np.uint8), t)
            if i in bad:
                img.encoding = "yuv422"
            writer.write(conn, t, store.serialize_cdr(img, img.__msgtype__))
    return standard_map().with_topics(depth=None, joint_states=None, instruction=None,
                                      action=None, reward=None, cost=None, episode=None)


def test_unexpected_image_encoding_names_bag_topic_and_time(tmp_path):
    tmap = bag_with_bad_frames(tmp_path / "bag", bad={2})
    with pytest.raises(UnsupportedEncoding, match="yuv422") as raised:
        read_episodes(tmp_path / "bag", tmap)
    err = raised.value
    assert (err.bag, err.topic, err.stamp_ns) == (str(tmp_path / "bag"), "/cam/rgb",
                                                 T0 + 200 * MS)
    assert "/cam/rgb" in str(err) and str(tmp_path / "bag") in str(err)

    report = ReadReport()
    episodes = read_episodes(tmp_path / "bag", tmap, skip_bad=True, report=report)
    assert [int(s.rgb[0, 0, 0]) for s in episodes[0].steps] == [0, 1, 3, 4]
    assert report.skipped["unsupported_encoding"] == 1


def test_undecodable_message_is_corrupt(tmp_path):
    store = safari_typestore()
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/rgb", "sensor_msgs/msg/Image", typestore=store)
        for i in range(3):
            t = T0 + i * 100 * MS
            img = make_image(np.zeros((4, 4, 3), np.uint8), t)
            raw = store.serialize_cdr(img, img.__msgtype__)
            writer.write(conn, t, raw if i != 1 else bytes(raw[:30]))
    tmap = bag_with_bad_frames(tmp_path / "unused", bad=set())
    with pytest.raises(CorruptBag, match="/cam/rgb") as raised:
        read_episodes(tmp_path / "bag", tmap)
    assert raised.value.stamp_ns == T0 + 100 * MS
    report = ReadReport()
    assert len(read_episodes(tmp_path / "bag", tmap, skip_bad=True, report=report)[0]) == 2
    assert report.skipped["corrupt"] == 1


def test_truncated_error_is_a_corrupt_bag():
    assert issubclass(TruncatedBag, CorruptBag)
