"""bag_player over real DDS: a subscriber in this process gets the bag's messages in order, with
their recorded content."""

from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (scripts/setup.sh)")
pytest.importorskip("safari_msgs", reason="needs the colcon-built safari_msgs")

from conftest import tiny_config  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from support import python_child  # noqa: E402

from safari_ros.bags import replay  # noqa: E402
from safari_ros.nodes.bag_player import message_class  # noqa: E402
from safari_ros.pretrain import generate_demos  # noqa: E402

TOPICS = ["/camera/color/image_raw", "/safari/shield/decision", "/safari/feedback"]


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("play") / "bag"
    generate_demos(tiny_config(), path, episodes_per_template=1, templates=["touch"], seed=1)
    return path


def test_bag_player_publishes_the_bag_in_order(small_bag):
    expected: dict[str, list] = {t: [] for t in TOPICS}
    for item in replay(small_bag, topics=TOPICS):
        expected[item.topic].append(deserialize_message(item.data, message_class(item.msgtype)))
    assert all(expected.values())

    rclpy.init()
    node = Node("bag_player_test")
    received: dict[str, list] = {t: [] for t in TOPICS}
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    for topic, msgs in expected.items():
        node.create_subscription(type(msgs[0]), topic,
                                 lambda m, t=topic: received[t].append(m), qos)
    proc = python_child(["-m", "safari_ros.nodes.bag_player", "--ros-args",
                         "-p", f"bag:={small_bag}", "-p", "rate:=10.0",
                         "-p", f"topics:={TOPICS}".replace("'", '"'),
                         "-p", "wait_for_subscribers_s:=30.0"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
                len(received[t]) < len(expected[t]) for t in TOPICS):
            rclpy.spin_once(node, timeout_sec=0.05)
        assert proc.wait(timeout=30) == 0  # exits by itself when the bag is done
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        node.destroy_node()
        rclpy.shutdown()
    for topic in TOPICS:
        assert received[topic] == expected[topic], topic
