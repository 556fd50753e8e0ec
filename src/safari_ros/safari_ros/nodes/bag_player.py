"""bag_player: publish a bag's messages on their recorded topics, paced at a chosen rate.

For this sandbox (no ros2cli); on a ROS 2 distribution `ros2 bag play` does the same. Messages
come from `safari_ros.bags.replay` as CDR (ROS 1 bags converted), are deserialised into the rclpy
class of their type and published with the default reliable QoS (REP-2003 for sensor
publishers), keeping their recorded header stamps. The node exits when the bag is done unless
`loop` is set.

Parameters: bag (path), rate (1.0 = as recorded, 0 = as fast as possible), loop, topics (empty =
all), wait_for_subscribers_s (wait up to this long until every topic has a subscriber).
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.serialization import deserialize_message

from safari_ros.bags import BagReader, paced, replay
from safari_ros.nodes.common import RELIABLE_QOS, declare


def message_class(msgtype: str) -> type:
    """'sensor_msgs/msg/Image' -> the rclpy message class (sensor_msgs.msg.Image)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class BagPlayer(Node):
    """Publishes the messages of one bag on their topics."""

    def __init__(self) -> None:
        super().__init__("bag_player")
        self.bag = declare(self, "bag", "", "bag to play (rosbag2 directory, .mcap, .db3, .bag)",
                           read_only=True)
        self.rate = declare(self, "rate", 1.0, "playback speed factor; 0 = as fast as possible")
        self.loop = declare(self, "loop", False, "start again at the end of the bag")
        self.topics = [t for t in declare(self, "topics", [""], "topics to play; empty = all")
                       if t]
        self.wait_s = declare(self, "wait_for_subscribers_s", 0.0,
                              "before playing, wait up to this long for a subscriber per topic")
        if not self.bag:
            raise ValueError("parameter 'bag' is empty: set it to the bag to play")
        if self.rate < 0:
            raise ValueError(f"parameter 'rate' must be >= 0, got {self.rate}")
        self._by_topic: dict[str, tuple[Publisher, type]] = {}
        self.published = 0

    def _publisher(self, topic: str, msgtype: str) -> tuple[Publisher, type]:
        if topic not in self._by_topic:
            cls = message_class(msgtype)
            self._by_topic[topic] = (self.create_publisher(cls, topic, RELIABLE_QOS), cls)
        return self._by_topic[topic]

    def _wait_for_subscribers(self) -> None:
        """Create every publisher first, then give DDS discovery time to match subscribers, so
        that the first messages are not published into the void."""
        with BagReader(self.bag) as bag:
            for topic, msgtype in bag.topics.items():
                if not self.topics or topic in self.topics:
                    self._publisher(topic, msgtype)
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and rclpy.ok():
            if all(pub.get_subscription_count() > 0 for pub, _ in self._by_topic.values()):
                return
            time.sleep(0.05)
        self.get_logger().warning("playing without a subscriber on every topic")

    def play(self) -> None:
        """Publish the bag once (or forever with loop)."""
        if self.wait_s > 0:
            self._wait_for_subscribers()
        while rclpy.ok():
            items = replay(self.bag, topics=self.topics or None)
            for item in paced(items, self.rate) if self.rate > 0 else items:
                pub, cls = self._publisher(item.topic, item.msgtype)
                pub.publish(deserialize_message(item.data, cls))
                self.published += 1
            self.get_logger().info(f"played {self.published} messages of {self.bag}")
            if not self.loop:
                break


USAGE = ("usage: bag_player --ros-args -p bag:=PATH [-p rate:=1.0] [-p loop:=true] "
         "[-p topics:=\"['/topic', ...]\"] [-p wait_for_subscribers_s:=0.0]")


def main(args: list[str] | None = None) -> None:
    """Play the bag, then shut down (Ctrl-C stops early). -h / --help before --ros-args prints
    the usage without starting ROS (rclpy passes it over, and the node would stop on its empty
    `bag` parameter)."""
    argv = sys.argv[1:] if args is None else args
    own = argv[:argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in own or "--help" in own:
        print(f"{USAGE}\n\n{__doc__}")
        return
    rclpy.init(args=args)
    node: Any = None
    try:
        node = BagPlayer()
        node.play()
        # Reliable delivery of the last messages needs the participant alive a moment longer.
        time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
