"""The other end of test_dds_roundtrip: publishes every safari_msgs message type, serves every
service and the RunEpisode action, all with seeded field values the test can recompute.

Run as a separate process: `python interface_peer.py SEED`.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.action import ActionServer
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from support import filled, interface_names, ros_class

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


class InterfacePeer(Node):
    """Publishes, serves and executes every safari_msgs interface once per request."""

    def __init__(self, seed: int) -> None:
        super().__init__("interface_peer")
        self.seed = seed
        names = interface_names()
        self._pubs = []
        for name in names["msg"]:
            pub = self.create_publisher(ros_class(f"safari_msgs/msg/{name}"), f"rt/{name}", LATCHED)
            pub.publish(filled(f"safari_msgs/msg/{name}", seed))
            self._pubs.append(pub)
        self._srvs = [
            self.create_service(
                ros_class(f"safari_msgs/srv/{name}"), f"rt/{name}", self._serve(name)
            )
            for name in names["srv"]
        ]
        self._actions = [
            ActionServer(self, ros_class(f"safari_msgs/action/{name}"), f"rt/{name}",
                         self._execute(name))
            for name in names["action"]
        ]

    def _serve(self, name: str):
        srv = ros_class(f"safari_msgs/srv/{name}")

        def handle(request, response):
            # Echo the seeded response only when the request arrived intact.
            if request == filled(f"safari_msgs/srv/{name}_Request", self.seed):
                return filled(f"safari_msgs/srv/{name}_Response", self.seed)
            return srv.Response()

        return handle

    def _execute(self, name: str):
        action = ros_class(f"safari_msgs/action/{name}")

        def execute(goal_handle):
            if goal_handle.request != filled(f"safari_msgs/action/{name}_Goal", self.seed):
                goal_handle.abort()
                return action.Result()
            goal_handle.publish_feedback(filled(f"safari_msgs/action/{name}_Feedback", self.seed))
            goal_handle.succeed()
            return filled(f"safari_msgs/action/{name}_Result", self.seed)

        return execute


def main() -> None:
    """Spin the peer until killed."""
    rclpy.init()
    node = InterfacePeer(int(sys.argv[1]))
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # SIGINT, or SIGTERM through rclpy's signal handler
    finally:
        executor.shutdown()  # join the executor's worker threads before the interpreter exits
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
