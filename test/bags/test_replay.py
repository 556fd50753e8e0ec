"""Replay: a bag's messages in time order as CDR (also from ROS 1 bags), paced by a rate."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from safari_ros.bags import ReplayItem, paced, replay, write_episodes
from safari_ros.bags.typestore import safari_typestore

from .synth import MS, T0, frame_rgb, make_episodes, write_standard_bag


def test_replay_yields_every_message_in_time_order_as_cdr(tmp_path):
    bag = write_episodes(tmp_path / "bag", make_episodes(2, 3))
    items = list(replay(bag))
    with AnyReader([bag]) as reader:
        assert len(items) == reader.message_count
    stamps = [i.timestamp_ns for i in items]
    assert stamps == sorted(stamps)
    store = safari_typestore()
    decisions = [i for i in items if i.topic == "/safari/shield/decision"]
    assert len(decisions) == 6
    first = store.deserialize_cdr(decisions[0].data, decisions[0].msgtype)
    assert decisions[0].msgtype == "safari_msgs/msg/ShieldDecision"
    assert first.executed_action_index == 0 and isinstance(decisions[0].data, bytes)


def test_topic_filter_and_decoded_objects(tmp_path):
    bag = write_episodes(tmp_path / "bag", make_episodes(1, 3))
    items = list(replay(bag, topics=["/safari/feedback"], decode=True))
    assert [i.data.step for i in items] == [0, 1, 2]
    assert {i.topic for i in items} == {"/safari/feedback"}


def test_ros1_bag_replays_as_ros2_cdr(tmp_path):
    path = tmp_path / "robot.bag"
    write_standard_bag(path, n=3, ros1=True)
    images = list(replay(path, topics=["/cam/rgb"]))
    store = safari_typestore()  # ROS 2 definitions: no Header.seq
    msg = store.deserialize_cdr(images[1].data, "sensor_msgs/msg/Image")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(T0 + 100 * MS, 10**9)
    np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width, 3), frame_rgb(1))


def test_rclpy_deserializes_the_replayed_bytes(tmp_path):
    pytest.importorskip("rclpy", reason="needs the ROS 2 wheels")
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image, JointState

    path = tmp_path / "robot.bag"
    write_standard_bag(path, n=2, ros1=True)
    classes = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/JointState": JointState}
    items = [i for i in replay(path) if i.msgtype in classes]
    assert len(items) == 6
    for item in items:
        msg = deserialize_message(item.data, classes[item.msgtype])
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert abs(stamp - item.timestamp_ns) < 10 * MS


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("rate", [1.0, 4.0])
def test_paced_follows_bag_time_scaled_by_rate(rate):
    clock = FakeClock()
    items = [ReplayItem("/t", "std_msgs/msg/Empty", b"", T0 + ms * MS) for ms in (0, 100, 100, 400)]
    seen = []
    for item in paced(items, rate, clock=clock, sleep=clock.sleep):
        seen.append((item.timestamp_ns, clock.now))
    assert [t for t, _ in seen] == [i.timestamp_ns for i in items]
    assert [round(now - 100.0, 6) for _, now in seen] == [0, 0.1 / rate, 0.1 / rate, 0.4 / rate]


def test_paced_catches_up_after_a_slow_consumer():
    clock = FakeClock()
    items = [ReplayItem("/t", "x", b"", T0 + ms * MS) for ms in (0, 100, 200)]
    it = paced(items, 1.0, clock=clock, sleep=clock.sleep)
    next(it)
    clock.now += 0.15  # the consumer took 150 ms: the 100 ms item is due at once
    next(it)
    next(it)
    assert clock.sleeps == [pytest.approx(0.05)]


def test_paced_refuses_a_non_positive_rate():
    with pytest.raises(ValueError, match="rate"):
        list(paced([], 0.0))
