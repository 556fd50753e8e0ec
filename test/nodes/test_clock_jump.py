"""shield_node on simulated time when /clock jumps (issue 13: "a jump of /clock backwards and
forwards"), over real DDS.

The test process is the clock, the robot and the policy: it publishes /clock, joint states and
proposals stamped on that clock. A frame stamped before a backward jump then comes from the
shield's future, one stamped before a forward jump is stale: either way the shield must stop and
say why, and take the next frames stamped on the new time as fresh again.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (scripts/setup.sh)")
pytest.importorskip("safari_msgs", reason="needs the colcon-built safari_msgs")

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from nodes.stack_support import start_supervisor  # noqa: E402
from nodes.test_shield_node import ACTIONS, CFG, HOME, NAMES, TOPICS  # noqa: E402
from safari_msgs.msg import ActionProposal, ShieldDecision  # noqa: E402
from safari_msgs.srv import SetMode  # noqa: E402
from safari_ros.graph import node_specs  # noqa: E402
from safari_ros.nodes.common import ns_stamp  # noqa: E402

JUMP_S = 30.0


class SimClock:
    """A /clock publisher that follows the wall clock from `start_s`, shifted by jumps."""

    def __init__(self, node: Node, start_s: float) -> None:
        self.pub = node.create_publisher(Clock, "/clock", 10)
        self.offset_ns = int(start_s * 1e9) - time.monotonic_ns()
        node.create_timer(0.01, self.tick)  # 100 Hz, on the test node's wall clock

    def now_ns(self) -> int:
        return time.monotonic_ns() + self.offset_ns

    def jump(self, seconds: float) -> None:
        self.offset_ns += int(seconds * 1e9)
        self.tick()

    def tick(self) -> None:
        self.pub.publish(Clock(clock=ns_stamp(self.now_ns())))


def spin_for(node: Node, seconds: float, until=lambda: False) -> bool:
    end = time.monotonic() + seconds
    while not until() and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.01)
    return until()


@pytest.fixture(scope="module")
def shield_on_sim_time(tmp_path_factory):
    specs = [s for s in node_specs(CFG, {"use_sim": "true"}) if s.name == "shield_node"]
    assert specs[0].parameters["use_sim_time"] is True
    folder = tmp_path_factory.mktemp("shield_sim_time")
    sup = start_supervisor(specs, folder, folder / "logs")
    yield sup
    sup.stop()


def test_a_clock_jump_either_way_means_stop_then_fresh_frames_move_again(shield_on_sim_time):
    rclpy.init()
    node = Node("clock_jump_test")  # on the wall clock: it is the clock
    try:
        clock = SimClock(node, start_s=1000.0)
        decisions: list[ShieldDecision] = []
        node.create_subscription(ShieldDecision, TOPICS["shield_decision"], decisions.append, 50)
        joints_pub = node.create_publisher(JointState, TOPICS["joint_states"], 10)
        proposal_pub = node.create_publisher(ActionProposal, TOPICS["action_proposal"], 10)
        mode = node.create_client(SetMode, "/safari/set_mode")
        assert mode.wait_for_service(timeout_sec=120), "shield_node did not come up"
        future = mode.call_async(SetMode.Request(mode=SetMode.Request.EXECUTE))
        assert spin_for(node, 10, future.done)
        spin_for(node, 10, lambda: proposal_pub.get_subscription_count() > 0)
        up = next(a for a in ACTIONS if a.name == "move_up")

        def frame() -> Time:
            """A joint state and a camera frame stamped now on the simulated clock."""
            stamp = ns_stamp(clock.now_ns())
            joints_pub.publish(JointState(header=_header(stamp), name=NAMES,
                                          position=[*HOME.tolist(), 0.04, 0.04],
                                          velocity=[0.0] * 9, effort=[0.0] * 9))
            spin_for(node, 0.1)
            return stamp

        def propose(observation: Time) -> ShieldDecision:
            """A move_up proposal for that frame, sent now on the simulated clock (the
            policy runs on it too)."""
            p = ActionProposal(action_index=up.index, action_name=up.name,
                               action_names=[a.name for a in ACTIONS],
                               probabilities=np.full(len(ACTIONS), 1 / len(ACTIONS), np.float32),
                               constraint_probabilities=np.zeros(len(ACTIONS), np.float32))
            p.header.stamp = ns_stamp(clock.now_ns())
            p.observation_stamp = observation

            seen = len(decisions)  # the same frame may be proposed again: answer this one

            def answer() -> ShieldDecision | None:
                return next((d for d in decisions[seen:] if d.observation_stamp == observation
                             and d.proposed_action_name == up.name), None)

            proposal_pub.publish(p)
            assert spin_for(node, 5, lambda: answer() is not None), "no ShieldDecision"
            return answer()

        def until_decided(stamp, settled, seconds: float = 30.0) -> ShieldDecision:
            """Propose for frames from `stamp()` until the decision is `settled`: the shield's
            clock follows /clock over DDS, and under load that lags behind ours (past the
            0.05 s of future_stamp_tolerance_s) or takes a while to take a jump."""
            end = time.monotonic() + seconds
            decision = propose(stamp())
            while not settled(decision) and time.monotonic() < end:
                decision = propose(stamp())
            return decision

        def moves(d: ShieldDecision) -> bool:
            return not d.intervened

        # Until the shield's /clock subscription has matched ours (DDS discovery, slow under
        # load) or while its clock lags, our stamps look like the future to it; a proposal that
        # reaches it late looks stale (1.8 s once, in CI at start-up). Fresh frames must move
        # within the wait.
        moving = until_decided(frame, moves)
        assert not moving.intervened, moving.reason

        def off_by_the_jump(d: ShieldDecision) -> bool:
            """Refused for the jump: from the future, or stale by about JUMP_S (a frame
            proposed again and again also goes stale by waiting, but by under a second)."""
            if not d.intervened:
                return False
            if "in the future" in d.reason:
                return True
            age = re.search(r"stale: ([0-9.]+) s old", d.reason)
            return age is not None and float(age.group(1)) > JUMP_S - 5

        for jump, why in ((-JUMP_S, "in the future"), (JUMP_S, "stale")):
            before = frame()
            clock.jump(jump)
            # A frame from before the jump is refused once the shield's clock has jumped (until
            # then, it is fresh and moves, as it should)
            old = until_decided(lambda before=before: before, off_by_the_jump)
            assert off_by_the_jump(old) and old.executed_action_name == "stop", old.reason
            assert old.watchdog == ShieldDecision.VIOLATION, old.reason
            assert why in old.reason, (why, old.reason)
            # ... and frames stamped on the new time are fresh again
            again = until_decided(frame, moves)
            assert not again.intervened, (jump, again.reason)
            assert again.executed_action_name == "move_up"
    finally:
        node.destroy_node()
        rclpy.shutdown()


def _header(stamp: Time):
    from std_msgs.msg import Header

    return Header(stamp=stamp, frame_id=CFG["frames"]["base"])
