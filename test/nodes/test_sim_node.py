"""sim_node over real DDS: a JointTrajectory moves the arm, frames and joint states carry
consistent stamps, and bad commands are refused with a logged reason while the arm holds."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (scripts/setup.sh)")
pytest.importorskip("safari_msgs", reason="needs the colcon-built safari_msgs")

from builtin_interfaces.msg import Duration  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from nodes.stack_support import REPO, one_node  # noqa: E402
from safari_msgs.msg import Feedback  # noqa: E402
from safari_ros.nodes.common import stamp_ns  # noqa: E402
from safari_ros.robot import kinematics as kin  # noqa: E402


# Separate processes on two cores: one retry absorbs a scheduling hiccup; a real fault
# fails both runs.
@pytest.mark.flaky(reruns=1, reruns_delay=2)
def test_sim_node_moves_on_commands_and_refuses_bad_ones(tmp_path):
    with one_node(tmp_path, "sim_node", use_sim=True) as (cfg, sup, node):
        t = cfg["topics"]
        colors, depths, joints = [], [], []
        node.create_subscription(Image, t["color_image"], colors.append, 20)
        node.create_subscription(Image, t["depth_image"], depths.append, 20)
        node.create_subscription(JointState, t["joint_states"], joints.append, 200)
        feedback: list[Feedback] = []
        node.create_subscription(Feedback, t["feedback"], feedback.append, 50)
        command = node.create_publisher(JointTrajectory, t["controller_command"], 10)
        reset = node.create_client(Trigger, "/sim_node/reset")
        assert reset.wait_for_service(timeout_sec=120), "sim_node did not come up"

        def spin(seconds: float, done=lambda: False) -> bool:
            end = time.monotonic() + seconds
            while time.monotonic() < end and not done():
                rclpy.spin_once(node, timeout_sec=0.02)
            return done()

        future = reset.call_async(Trigger.Request())
        end = time.monotonic() + 30
        while not future.done() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        assert future.result().success
        assert spin(30, lambda: bool(colors and depths and joints)), "no sensor data"
        # Colour and depth of a frame share one stamp; joint state stamps never go backwards.
        assert stamp_ns(colors[0].header.stamp) == stamp_ns(depths[0].header.stamp)
        stamps = [stamp_ns(j.header.stamp) for j in joints]
        assert all(b >= a for a, b in itertools.pairwise(stamps))
        assert colors[0].encoding == "rgb8" and depths[0].encoding == "32FC1"

        def arm() -> np.ndarray:
            js = joints[-1]
            return np.array([js.position[js.name.index(n)] for n in kin.ARM_JOINTS])

        start = arm()
        target = start.copy()
        target[0] += 0.2

        def send(names, positions, seconds=1.0, answer_frame=True):
            """Publish a command; during an episode it answers the next camera frame, as the
            shield's does (the simulator is lockstep)."""
            if answer_frame:
                n = len(colors)
                spin(5, lambda: len(colors) > n)
            msg = JointTrajectory(joint_names=list(names))
            msg.points = [JointTrajectoryPoint(
                positions=[float(p) for p in positions],
                time_from_start=Duration(sec=int(seconds),
                                         nanosec=int((seconds % 1) * 1e9)))]
            if not len(positions):
                msg.points = []
            command.publish(msg)

        for _ in range(12):  # one command per control tick (lockstep), each arriving in 0.4 s
            send(kin.ARM_JOINTS, target, seconds=0.4)
            if spin(0.5, lambda: abs(arm()[0] - target[0]) < 0.02):
                break
        assert abs(arm()[0] - target[0]) < 0.02, f"joint 1 at {arm()[0]}, wanted {target[0]}"

        # Bad commands between episodes, where every command is applied as it comes (no frame
        # to answer): the episode of 10 ticks ends on its own, announced by a final Feedback.
        assert spin(90, lambda: any(fb.done for fb in feedback)), "the episode did not end"
        spin(0.5)
        held = arm()
        bad = [
            (["no_such_joint", *kin.ARM_JOINTS[1:]], target),
            (kin.ARM_JOINTS, [*target[:3], float("nan"), *target[4:]]),
            (kin.ARM_JOINTS, [*target[:6], kin.JOINT_UPPER[6] + 0.5]),
        ]
        for names, positions in [*bad, (kin.ARM_JOINTS, [])]:  # the last one is empty
            send(names, positions, answer_frame=False)
            spin(0.6)
        assert np.max(np.abs(arm() - held)) < 0.02, "the arm moved on a bad command"

        # A new episode puts the arm back at its start pose, and every joint state within sync
        # tolerance of the episode's first frame says so (the last pre-reset state once shared
        # the frame's stamp: the shield planned from the old pose and the arm raced there).
        n_colors, n_joints = len(colors), len(joints)
        future = reset.call_async(Trigger.Request())
        assert spin(30, lambda: future.done() and len(colors) > n_colors), "no frame after reset"
        spin(0.3)
        frame = stamp_ns(colors[n_colors].header.stamp)
        tolerance = cfg["nodes"]["perception_node"]["parameters"]["sync_tolerance_s"] * 1e9
        before = max(stamp_ns(j.header.stamp) for j in joints[:n_joints])
        assert before < frame - tolerance, "a pre-reset joint state pairs with the first frame"
        near = [j for j in joints if abs(stamp_ns(j.header.stamp) - frame) <= tolerance]
        assert near, "no joint state goes with the new episode's first frame"
        for js in near:
            q0 = js.position[js.name.index(kin.ARM_JOINTS[0])]
            assert abs(q0 - start[0]) < 0.05 < abs(q0 - held[0]), "a pre-reset joint state"
        assert not sup.dead()
    log = (tmp_path / "logs" / "sim_node.log").read_text()  # complete once the node exited
    for reason in ("unknown joint", "non-finite", "beyond its limits", "empty"):
        assert reason in log, f"no refusal for {reason!r} in the log:\n{log}"


def test_sim_node_reports_the_person_cost_sources_with_the_hri_config(tmp_path):
    # sim_node once built its per-tick cost sources from the tabletop's five names, so the HRI
    # domain's person sources raised KeyError in its loop.
    from safari_ros.config import load_config

    hri = load_config(REPO / "config" / "hri.yaml")["hri"]
    with one_node(tmp_path, "sim_node", use_sim=True, sections={"hri": hri}) as (cfg, sup, node):
        feedback: list[Feedback] = []
        node.create_subscription(Feedback, cfg["topics"]["feedback"], feedback.append, 50)
        reset = node.create_client(Trigger, "/sim_node/reset")
        assert reset.wait_for_service(timeout_sec=120), "sim_node did not come up"
        future = reset.call_async(Trigger.Request())
        end = time.monotonic() + 60
        while time.monotonic() < end and not (future.done() and len(feedback) >= 3):
            rclpy.spin_once(node, timeout_sec=0.05)
        assert future.done() and future.result().success
        assert len(feedback) >= 3, f"no feedback; sim_node exited: {sup.dead()}"
        assert {"separation", "person_contact", "table_contact"} <= set(feedback[-1].cost_sources)
        assert len(feedback[-1].cost_active) == len(feedback[-1].cost_sources)
        assert not sup.dead()
