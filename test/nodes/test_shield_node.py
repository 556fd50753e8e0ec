"""shield_node over real DDS: what reaches the controller topic never breaks a hard limit.

The test process plays robot and policy: it publishes random joint states and random proposals
(random action, random C row), and checks every JointTrajectory the shield sends against the
limits of config/tabletop.yaml, independently of the shield's own code (dense sampling of the
commanded TCP path on the Panda's kinematics).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (scripts/setup.sh)")
pytest.importorskip("safari_msgs", reason="needs the colcon-built safari_msgs")

from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from support import REPO, path_enters_zone  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from nodes.stack_support import start_supervisor  # noqa: E402
from safari_msgs.msg import ActionProposal, ShieldDecision  # noqa: E402
from safari_msgs.srv import SetMode  # noqa: E402
from safari_ros.config import action_specs, load_config, safety_limits  # noqa: E402
from safari_ros.graph import node_specs  # noqa: E402
from safari_ros.nodes.common import ns_stamp  # noqa: E402
from safari_ros.robot import kinematics as kin  # noqa: E402

CFG = load_config(REPO / "config" / "tabletop.yaml")
LIMITS = safety_limits(CFG)
ACTIONS = action_specs(CFG)
TOPICS = CFG["topics"]
HOME = np.asarray(CFG["sim"]["home_joint_positions"], float)
NAMES = [*kin.ARM_JOINTS, *kin.FINGER_JOINTS]
CASES = 120
STEP = float(CFG["actions"]["step_m"])
TOOL_DOWN = kin.tcp_pose(HOME)[1]


def state_near_a_hazard(rng: np.random.Generator) -> np.ndarray:
    """Joints that put the TCP within one step of a keep-out zone or a workspace face, where a
    single move can break a limit (uniform random states almost never do)."""
    boxes = [*LIMITS.keep_out_zones, LIMITS.workspace]
    box = boxes[rng.integers(len(boxes))]
    axis, side = rng.integers(3), rng.choice([-1.0, 1.0])
    point = box.center + rng.uniform(-1, 1, 3) * box.half_extents
    inside_ws = box is LIMITS.workspace
    # Just inside a workspace face, or just outside a keep-out face.
    offset = -rng.uniform(0, STEP) if inside_ws else rng.uniform(0, STEP)
    point[axis] = box.center[axis] + side * (box.half_extents[axis] + offset)
    point[2] = max(point[2], LIMITS.table_clearance_m + 0.01)
    return kin.solve_ik(point, TOOL_DOWN, HOME, q_rest=HOME).q


def violates_hard_limit(q_now: np.ndarray, q_target: np.ndarray, duration: float) -> str:
    """Independent check of one commanded motion from rest to rest; '' when it is within every
    hard limit. A joint_trajectory_controller follows the cubic q0 + (3s^2 - 2s^3)(q1 - q0): the
    joint-space line, at up to 1.5x its mean speed."""
    u = np.linspace(0.0, 1.0, 401)
    joints = q_now + u[:, None] * (q_target - q_now)
    path = np.array([kin.tcp_pose(q)[0] for q in joints])
    if np.max(np.linalg.norm(path - path[0], axis=1)) < 1e-6:
        return ""  # holding still is always allowed
    zone = path_enters_zone(path, LIMITS.keep_out_zones)
    if zone:
        return f"path enters {zone}"
    ws = LIMITS.workspace
    outside = (np.linalg.norm(np.maximum(0, np.maximum(ws.min - path, path - ws.max)), axis=1)
               + np.maximum(0, LIMITS.table_clearance_m - path[:, 2]))
    coming_back = outside[0] > 0 and np.all(np.diff(outside) <= 1e-6) and outside[-1] < outside[0]
    if outside.max() > 0 and not coming_back:
        return "leaves the workspace (or goes further out)"
    tcp_peak = 1.5 * np.max(np.linalg.norm(np.diff(path, axis=0), axis=1)) / (u[1] * duration)
    if tcp_peak > LIMITS.ee_speed_limit_mps * 1.01:  # 1 %: the shield samples more coarsely
        return f"TCP too fast ({tcp_peak:.3f} m/s)"
    joint_peak = 1.5 * np.abs(q_target - q_now) / duration
    if np.any(joint_peak > LIMITS.joint_speed_fraction * kin.JOINT_VELOCITY_LIMIT + 1e-9):
        return "joints too fast"
    margin = LIMITS.joint_limit_margin_rad
    if np.any(q_target < kin.JOINT_LOWER + margin - 1e-9) or np.any(
        q_target > kin.JOINT_UPPER - margin + 1e-9
    ):
        return "joint target inside the limit margin"
    return ""


@pytest.fixture(scope="module")
def shield(tmp_path_factory):
    specs = [s for s in node_specs(CFG, {"use_sim": "false"}) if s.name == "shield_node"]
    folder = tmp_path_factory.mktemp("shield")
    sup = start_supervisor(specs, folder, folder / "logs")
    yield sup
    sup.stop()


@pytest.fixture(scope="module")
def node():
    rclpy.init()
    n = Node("shield_property_test")
    yield n
    n.destroy_node()
    rclpy.shutdown()


def spin_until(node, done, timeout):
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.02)
    return done()


def executing_shield(node):
    """Publishers of joint states and proposals, once the shield is up and in execute mode."""
    joints_pub = node.create_publisher(JointState, TOPICS["joint_states"], 10)
    proposal_pub = node.create_publisher(ActionProposal, TOPICS["action_proposal"], 10)
    mode = node.create_client(SetMode, "/safari/set_mode")
    assert mode.wait_for_service(timeout_sec=120), "shield_node did not come up"
    future = mode.call_async(SetMode.Request(mode=SetMode.Request.EXECUTE))
    assert spin_until(node, future.done, 10)
    spin_until(node, lambda: proposal_pub.get_subscription_count() > 0, 10)
    return joints_pub, proposal_pub


# Separate processes on two cores: one retry absorbs a scheduling hiccup; a real fault
# fails both runs.
@pytest.mark.flaky(reruns=1, reruns_delay=2)
def test_nothing_reaching_the_controller_breaks_a_hard_limit(shield, node):
    trajectories, decisions = [], []
    node.create_subscription(JointTrajectory, TOPICS["controller_command"],
                             trajectories.append, 50)
    node.create_subscription(ShieldDecision, TOPICS["shield_decision"], decisions.append, 50)
    joints_pub, proposal_pub = executing_shield(node)

    rng = np.random.default_rng(0)
    checked = moved = refused = 0
    previous: list[float] | None = None  # positions of the last trajectory sent
    for case in range(CASES):
        if case % 3:
            q = state_near_a_hazard(rng)
        else:
            q = np.clip(HOME + rng.normal(0, 0.45, 7), kin.JOINT_LOWER, kin.JOINT_UPPER)
        if case % 15 == 14:
            q[rng.integers(7)] = np.nan  # a broken joint encoder must never mean motion
        js = JointState(name=NAMES, position=[*q.tolist(), 0.04, 0.04],
                        velocity=[0.0] * 9, effort=[0.0] * 9)
        js.header.stamp = node.get_clock().now().to_msg()
        joints_pub.publish(js)
        frame_stamp = js.header.stamp  # the camera frame this joint state was paired with
        spin_until(node, lambda: False, 0.05)  # let the joint state land first
        # Mostly below tau_safe, so that the hard limits, not the learned check, decide.
        c_row = rng.uniform(0, 0.7, len(ACTIONS)).astype(np.float32)
        index = int(rng.integers(len(ACTIONS)))
        p = ActionProposal(action_index=index, action_name=ACTIONS[index].name,
                           action_names=[a.name for a in ACTIONS],
                           probabilities=np.full(len(ACTIONS), 1 / len(ACTIONS), np.float32),
                           constraint_probabilities=c_row,
                           constraint_value=float(c_row[index]))
        p.header.stamp = node.get_clock().now().to_msg()
        p.observation_stamp = frame_stamp
        n_traj, n_dec = len(trajectories), len(decisions)
        proposal_pub.publish(p)
        assert spin_until(node, lambda n=n_dec: len(decisions) > n, 5), "no ShieldDecision"
        spin_until(node, lambda: False, 0.05)
        decision = decisions[-1]
        assert decision.proposed_action_index == index
        for traj in trajectories[n_traj:]:
            assert list(traj.joint_names)[:7] == list(kin.ARM_JOINTS)
            target = np.asarray(traj.points[-1].positions[:7])
            assert np.all(np.isfinite(target)), "non-finite command sent"
            duration = (traj.points[-1].time_from_start.sec
                        + traj.points[-1].time_from_start.nanosec * 1e-9)
            sent = list(traj.points[-1].positions)
            if not np.all(np.isfinite(q)):
                # No new motion for a NaN joint state: the stop re-sends the last command.
                assert sent == previous, "a motion was sent for a NaN joint state"
                assert decision.input_valid == ShieldDecision.VIOLATION
                continue
            previous = sent
            moving = np.linalg.norm(target - q) > 1e-6
            # A motion ends at rest (JTC: cubic spline); a stop may give positions only.
            rates = list(traj.points[-1].velocities)
            assert rates == [0.0] * 8 or (not rates and not moving), rates
            why = violates_hard_limit(q, target, duration)
            assert not why, f"case {case}: {ACTIONS[index].name} -> {why} ({decision.reason})"
            checked += 1
            moved += int(moving)
        if c_row[index] >= LIMITS.tau_safe and ACTIONS[index].name not in ("stop",):
            assert decision.intervened, "C(s,a) >= tau_safe was executed"
        refused += int(decision.intervened)
    # The property is only meaningful if both outcomes happened many times.
    assert moved > 10 and refused > 10 and checked > 50, (moved, refused, checked)


def _listening(node):
    """(decisions, trajectories) as they arrive, and the publishers of an executing shield."""
    decisions, trajectories = [], []
    node.create_subscription(ShieldDecision, TOPICS["shield_decision"], decisions.append, 50)
    node.create_subscription(JointTrajectory, TOPICS["controller_command"],
                             trajectories.append, 50)
    return decisions, trajectories, *executing_shield(node)


def _propose(node, proposal_pub, decisions, action, observation_stamp):
    """Publish one proposal for `action` answering `observation_stamp`; its ShieldDecision."""
    p = ActionProposal(action_index=action.index, action_name=action.name,
                       action_names=[a.name for a in ACTIONS],
                       probabilities=np.full(len(ACTIONS), 1 / len(ACTIONS), np.float32),
                       constraint_probabilities=np.zeros(len(ACTIONS), np.float32))
    p.header.stamp = node.get_clock().now().to_msg()
    p.observation_stamp = observation_stamp

    def answer():  # a watchdog stop may come in between
        return next((d for d in decisions if d.observation_stamp == observation_stamp
                     and d.proposed_action_name == action.name), None)

    proposal_pub.publish(p)
    assert spin_until(node, lambda: answer() is not None, 5), "no ShieldDecision"
    spin_until(node, lambda: False, 0.1)
    return answer()


@pytest.mark.flaky(reruns=1, reruns_delay=2)
def test_a_joint_state_older_than_the_observation_means_stop(shield, node):
    """A proposal answering a frame newer than the last joint state is not planned from that
    state (a dead joint-state stream, or the pose from before a reset): stop, reason named."""
    decisions, trajectories, joints_pub, proposal_pub = _listening(node)
    up = next(a for a in ACTIONS if a.name == "move_up")
    lag = LIMITS.joint_state_max_lag_s + 0.2

    def propose(observation_ns: int) -> ShieldDecision:
        return _propose(node, proposal_pub, decisions, up, ns_stamp(observation_ns))

    js = JointState(name=NAMES, position=[*HOME.tolist(), 0.04, 0.04], velocity=[0.0] * 9,
                    effort=[0.0] * 9)
    # The joint state `lag` in the past, the new frame now: observation stamps from the future
    # are refused by the watchdog in their own right.
    now_ns = node.get_clock().now().nanoseconds
    joint_ns = now_ns - int(lag * 1e9)
    js.header.stamp.sec, js.header.stamp.nanosec = divmod(joint_ns, 10**9)
    joints_pub.publish(js)
    spin_until(node, lambda: False, 0.1)

    n_traj = len(trajectories)
    stale = propose(now_ns)
    assert stale.intervened and stale.executed_action_name == "stop"
    assert stale.watchdog == ShieldDecision.VIOLATION
    assert "joint_state" in stale.reason, stale.reason
    for traj in trajectories[n_traj:]:  # only a hold at the measured pose went out
        np.testing.assert_allclose(traj.points[-1].positions[:7], HOME, atol=1e-9)

    js.header.stamp = node.get_clock().now().to_msg()  # a current joint state, its frame
    joints_pub.publish(js)
    spin_until(node, lambda: False, 0.1)
    current = propose(js.header.stamp.sec * 10**9 + js.header.stamp.nanosec)
    assert not current.intervened, current.reason
    assert current.executed_action_name == "move_up"


@pytest.mark.flaky(reruns=1, reruns_delay=2)
def test_a_stop_without_a_trustworthy_joint_state_resends_the_last_target(shield, node):
    """A NaN joint state: the stop cannot hold a measured pose, so the shield re-sends the point
    it last commanded (the rest of a motion it checked) and says so in the decision."""
    decisions, trajectories, joints_pub, proposal_pub = _listening(node)
    up = next(a for a in ACTIONS if a.name == "move_up")

    def joint_state(position):
        js = JointState(name=NAMES, position=[*position, 0.04, 0.04], velocity=[0.0] * 9,
                        effort=[0.0] * 9)
        js.header.stamp = node.get_clock().now().to_msg()
        joints_pub.publish(js)
        spin_until(node, lambda: False, 0.1)
        return js.header.stamp

    moved = _propose(node, proposal_pub, decisions, up, joint_state(HOME.tolist()))
    assert not moved.intervened, moved.reason
    assert trajectories, "no motion sent"
    target = list(trajectories[-1].points[-1].positions)
    n_traj = len(trajectories)
    broken = _propose(node, proposal_pub, decisions, up, joint_state([float("nan")] * 7))
    assert broken.executed_action_name == "stop" and broken.intervened
    assert broken.input_valid == ShieldDecision.VIOLATION
    assert "re-sent the last commanded target" in broken.reason, broken.reason
    sent = trajectories[n_traj:]
    assert sent, "the stop sent nothing"
    for traj in sent:
        np.testing.assert_allclose(traj.points[-1].positions, target)


def test_a_stop_before_any_joint_state_says_what_the_controller_does(node):
    """No joint state and nothing commanded yet: nothing can be sent (a point needs positions),
    so the controller keeps holding; the shield says so, once in its log, and in a decision."""
    from safari_ros.nodes.shield_node import CONTROLLER_HOLDS, ShieldNode

    decisions = []
    node.create_subscription(ShieldDecision, TOPICS["shield_decision"], decisions.append, 50)
    fresh = ShieldNode()  # in this process, never spun: it sees no joint state
    try:
        assert spin_until(node, lambda: fresh.decisions.get_subscription_count() > 0, 10)
        assert fresh.send_stop("test") == CONTROLLER_HOLDS and fresh.untrusted_said
        fresh.stop_and_report("estop")

        def said():
            return next((d for d in decisions if d.reason.startswith("estop;")), None)

        assert spin_until(node, lambda: said() is not None, 5), "no decision for the stop"
        decision = said()
        assert decision.executed_action_name == "stop"
        assert decision.input_valid == ShieldDecision.VIOLATION
        assert CONTROLLER_HOLDS in decision.reason
    finally:
        fresh.destroy_node()


def test_a_switch_between_execute_and_learn_does_not_extend_the_watchdog(node):
    """The watchdog's deadline counts from the last proposal, and from the switch into a mode
    that moves the arm; a switch between execute and learn is no fresh input (re-armed there, a
    stream that died just before the switch had up to watchdog_s more)."""
    from safari_ros.nodes.shield_node import ShieldNode

    fresh = ShieldNode()  # in this process, never spun: only its mode logic runs

    def switch(mode: int) -> float:
        assert fresh.on_set_mode(SetMode.Request(mode=mode), SetMode.Response()).success
        return fresh.last_proposal_wall

    try:
        before = switch(SetMode.Request.IDLE)  # it starts in execute (autostart)
        armed = switch(SetMode.Request.EXECUTE)  # from idle: the deadline starts now
        assert armed > before
        fresh.last_proposal_wall = last = armed - 0.4  # the last proposal came 0.4 s ago
        assert switch(SetMode.Request.LEARN) == last
        assert switch(SetMode.Request.EXECUTE) == last
        assert switch(SetMode.Request.PAUSE) == last  # a stop; nothing to watch
        assert switch(SetMode.Request.LEARN) > last  # moving again: a new deadline
    finally:
        fresh.destroy_node()
