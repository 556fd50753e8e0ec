"""shield_node: the only path to the controller (a lifecycle node).

Every ActionProposal is checked on its predicted motion against the hard limits and the learned
C(s,a) < tau_safe (safari_ros.safety); what passes is sent to the controller as a
trajectory_msgs/JointTrajectory, anything else is replaced by the configured backup action.
A watchdog sends stop when proposals or observations go stale. Deactivation, e-stop and
shutdown send stop first. Every decision is published as safari_msgs/ShieldDecision.

A stop is a one-point trajectory at the measured pose. Without a trustworthy joint state (none
yet, or NaN) the node still acts: it re-sends the target it last commanded (the remainder of a
motion it checked; JTC then holds there), or, when it has commanded nothing, leaves the
controller holding where it is; it says so once in the log and in every ShieldDecision until a
trustworthy joint state returns (input_valid = VIOLATION, reason naming what was done).
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Vector3
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from safari_msgs.msg import ActionProposal, ShieldDecision
from safari_msgs.srv import SetMode
from safari_ros.config import safety_limits
from safari_ros.nodes.common import (
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    declare,
    node_config,
    run_node,
    stamp_ns,
)
from safari_ros.robot import kinematics as kin
from safari_ros.robot.primitives import PlannedMotion
from safari_ros.safety.shield import (
    CHECKS,
    HARD_LIMITS,
    Ages,
    ArmState,
    Check,
    Shield,
    ShieldVerdict,
)

MODE_NAMES = {SetMode.Request.IDLE: "idle", SetMode.Request.EXECUTE: "execute",
              SetMode.Request.LEARN: "learn", SetMode.Request.PAUSE: "pause",
              SetMode.Request.ESTOP: "estop", SetMode.Request.HOME: "home"}
JOINTS = (*kin.ARM_JOINTS, kin.FINGER_JOINTS[0])
STOP_SETTLE_S = 0.05  # a stop trajectory's single point: reach the measured pose at once
HELD_LAST_TARGET = "stop_without_joint_state:re-sent the last commanded target"
CONTROLLER_HOLDS = "stop_without_joint_state:nothing commanded yet, the controller holds"


# The modes in which proposals move the arm (and the watchdog runs).
MOVING_MODES = (SetMode.Request.EXECUTE, SetMode.Request.LEARN)


def _duration(seconds: float) -> Duration:
    return Duration(sec=int(seconds), nanosec=int((seconds % 1.0) * 1e9))


class ShieldNode(LifecycleNode):
    """Hard limits + learned check + watchdog in front of the joint trajectory controller."""

    def __init__(self) -> None:
        super().__init__("shield_node")
        self.cfg = node_config(self)
        self.topics = self.cfg["topics"]
        self.use_moveit = declare(self, "use_moveit", False,
                                  "request moveit_py planning (not supported yet: the shield "
                                  "plans with the IK primitives and says so)")
        if self.use_moveit:
            self.get_logger().warning(
                "use_moveit: moveit_py planning is not supported by this release; the shield "
                "plans the primitives with the Panda IK it checks them on")
        self.autostart = declare(self, "autostart", True, "configure and activate at start-up")
        self.limits = safety_limits(self.cfg)
        self.shield = Shield(self.cfg)
        self.actions = self.shield.actions
        self.mode = SetMode.Request.EXECUTE if self.autostart else SetMode.Request.IDLE
        self.active = False
        self.joints: np.ndarray | None = None  # 7 arm joints + finger opening, measured
        # Their velocities (the motion starts from them); None: the robot did not report them.
        self.joint_rates: np.ndarray | None = None
        self.joint_stamp_ns: int | None = None  # header stamp of that joint state
        # The last trajectory point sent: (arm + finger positions, at rest, monotonic end time).
        self.last_command: tuple[np.ndarray, bool, float] | None = None
        self.untrusted_said = False  # "no trustworthy joint state" logged since the last good one
        self.finger_target = float(self.cfg["sim"]["gripper_open_m"])
        self.last_proposal_wall = time.monotonic()
        self.watchdog_timer = None  # one-shot deadline, re-armed at every fresh proposal
        self.stopped_for_watchdog = False
        self.counts = {"decisions": 0, "interventions": 0, "watchdog_stops": 0}
        self.controller = None
        if self.autostart:
            self.trigger_configure()
            self.trigger_activate()

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Create the controller publisher and the subscriptions."""
        t = self.topics
        self.controller = self.create_publisher(JointTrajectory, t["controller_command"],
                                                RELIABLE_QOS)
        self.decisions = self.create_publisher(ShieldDecision, t["shield_decision"], RELIABLE_QOS)
        self.markers = self.create_publisher(MarkerArray, t["shield_markers"], LATCHED_QOS)
        self.diagnostics = self.create_publisher(DiagnosticArray, t["diagnostics"], RELIABLE_QOS)
        self.mode_pub = self.create_publisher(String, "/safari/mode", LATCHED_QOS)
        self.create_subscription(JointState, t["joint_states"], self.on_joint_state, SENSOR_QOS)
        self.create_subscription(ActionProposal, t["action_proposal"], self.on_proposal,
                                 RELIABLE_QOS)
        self.create_service(SetMode, "/safari/set_mode", self.on_set_mode)
        # Event-driven deadline on wall (steady) time, so a frozen simulation clock cannot
        # freeze it: the timer is re-armed at every fresh proposal and so fires watchdog_s after
        # the last one. A 50 ms poll added up to 50 ms to every stop (79 ms past the deadline
        # under load, issue 13); after firing it repeats every watchdog_s while inputs stay
        # stale, which the stopped_for_watchdog flag turns into one stop.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.watchdog_timer = self.create_timer(self.limits.watchdog_s, self.on_watchdog,
                                                clock=steady)
        self.recheck_timer = self.create_timer(self.limits.watchdog_s, self.on_recheck,
                                               clock=steady)
        self.recheck_timer.cancel()  # armed by on_watchdog only
        self.create_timer(1.0, self.publish_status)
        self.publish_zones()
        self.publish_mode()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Open the path to the controller."""
        # Python's full garbage collections walk every object made at start-up (numpy, the
        # message types, the kinematics); frozen, the start-up heap is never walked again in
        # the control path. (The late first stop once put down to it came from re-arming the
        # watchdog at a switch from execute to learn: on_set_mode.)
        gc.collect()
        gc.freeze()
        self.active = True
        self.rearm_watchdog()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the arm, then close the path."""
        self.stop_and_report("deactivate")
        self.active = False
        return super().on_deactivate(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the arm before going away."""
        self.stop_and_report("shutdown")
        self.active = False
        return TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------ inputs
    def on_joint_state(self, msg: JointState) -> None:
        """Keep the measured arm joints and finger opening (NaN stays NaN: it fails the checks)."""
        index = {n: i for i, n in enumerate(msg.name)}
        if not all(j in index for j in JOINTS) or len(msg.position) != len(msg.name):
            return
        self.joints = np.array([msg.position[index[j]] for j in JOINTS], float)
        self.joint_stamp_ns = stamp_ns(msg.header.stamp)
        # A driver may publish no velocities (REP: empty): unknown, not zero, so the shield
        # refuses motion from it; a present NaN fails the checks too.
        self.joint_rates = (np.array([msg.velocity[index[j]] for j in JOINTS], float)
                            if len(msg.velocity) == len(msg.name) else None)
        if np.all(np.isfinite(self.joints)):
            self.untrusted_said = False

    def on_proposal(self, msg: ActionProposal) -> None:
        """Decide and execute; any failure on the way ends in stop (fail closed)."""
        received = self.rearm_watchdog()
        self.stopped_for_watchdog = False
        if not self.active or self.mode not in MOVING_MODES:
            return
        try:
            verdict = self.decide(msg)
            if verdict.plan is None:
                note = self.send_stop(verdict.reason or "proposed")
                if note:
                    verdict.reason = f"{verdict.reason};{note}"
            else:
                self.send_plan(verdict.plan)
        except Exception as exc:
            self.get_logger().error(f"shield failed on a proposal ({exc!r}); sending stop")
            note = self.send_stop("internal_error")
            verdict = ShieldVerdict(self.shield.stop, self.shield.stop,
                                    {c: Check.NOT_CHECKED for c in CHECKS},
                                    ";".join(filter(None, ("internal_error", note))))
            verdict.codes["input_valid"] = Check.VIOLATION
        self.publish_decision(msg, verdict, (time.monotonic() - received) * 1e3)

    def arm_state(self) -> ArmState:
        """The measured arm for the shield (NaN positions when no joint state has arrived)."""
        joints = self.joints if self.joints is not None else np.full(len(JOINTS), np.nan)
        rates = None if self.joint_rates is None else self.joint_rates[:7]
        return ArmState(joints[:7], rates, self.finger_target)

    def decide(self, msg: ActionProposal) -> ShieldVerdict:
        """The verdict for one proposal, with the motion to send (plan None: stop)."""
        now_ns = self.get_clock().now().nanoseconds
        observation_ns = stamp_ns(msg.observation_stamp)
        # Plan only from a joint state at least as recent as the frame the policy saw (within
        # the tolerance): after a reset or with a dead joint-state stream the last one received
        # describes a pose the arm has left.
        no_joints = self.joint_stamp_ns is None
        ages = Ages(observation_s=(now_ns - observation_ns) / 1e9,
                    proposal_s=(now_ns - stamp_ns(msg.header.stamp)) / 1e9,
                    joint_state_lag_s=(math.inf if no_joints
                                       else (observation_ns - self.joint_stamp_ns) / 1e9),
                    joint_state_age_s=(math.inf if no_joints
                                       else (now_ns - self.joint_stamp_ns) / 1e9))
        return self.shield.decide(msg.action_index, msg.constraint_probabilities,
                                  self.arm_state(), ages)

    def rearm_watchdog(self) -> float:
        """Fresh input now: the deadline is watchdog_s from now; returns now (monotonic)."""
        now = time.monotonic()
        self.last_proposal_wall = now
        if self.watchdog_timer is not None:
            self.watchdog_timer.reset()
        return now

    def on_watchdog(self) -> None:
        """No proposal within the deadline while executing -> stop (once per stale period)."""
        if not self.active or self.mode not in MOVING_MODES:
            return
        # The timer was reset after last_proposal_wall was read, on the same monotonic clock:
        # when it fires the deadline has normally passed (the 1 ms covers rounding of the two
        # clocks). But a proposal can re-arm it between the executor finding it due and taking
        # it, and taking it then moves its next firing a whole period past the new deadline
        # (rcl_timer_call adds the period to the reset's deadline): the last proposal before a
        # kill then got its stop watchdog_s late (1.02 s after it in test_stack, 0.5-0.9 s past
        # the deadline in 1 of 10 camera_stop faults). So a firing that finds the input fresh
        # checks again exactly at the deadline, on a one-shot timer of its own.
        left = self.last_proposal_wall + self.limits.watchdog_s - time.monotonic()
        if left > 1e-3:
            self.recheck_timer.timer_period_ns = int(left * 1e9)
            self.recheck_timer.reset()
            return
        if not self.stopped_for_watchdog:
            self.stopped_for_watchdog = True
            # The stop first, the log after: the deadline has passed, and an rclpy log call is
            # not free (it walks the caller's frames with inspect.getframeinfo, which reads
            # source lines and resolves paths).
            note = self.send_stop("watchdog")
            self.counts["watchdog_stops"] += 1
            self.get_logger().warning("no fresh proposal within the watchdog deadline: stop")
            self.publish_stop_decision("watchdog", note, watchdog=Check.VIOLATION)

    def on_recheck(self) -> None:
        """The one-shot check at a deadline that on_watchdog found still ahead."""
        self.recheck_timer.cancel()
        self.on_watchdog()

    def publish_stop_decision(self, why: str, note: str, watchdog: Check) -> None:
        """The audit record of a stop that answers no proposal (watchdog, operator, lifecycle):
        nothing was checked but the watchdog and whether the joint state could be trusted."""
        decision = ShieldDecision()
        decision.header.stamp = self.get_clock().now().to_msg()
        decision.executed_action_index = self.shield.stop.index
        decision.executed_action_name = "stop"
        decision.proposed_action_name = ""
        decision.intervened = True
        for check in (*HARD_LIMITS, "learned"):
            setattr(decision, check, int(Check.NOT_CHECKED))
        decision.watchdog = int(watchdog)
        decision.input_valid = int(Check.VIOLATION if note else Check.OK)
        decision.reason = ";".join(filter(None, (why, note)))
        decision.constraint_threshold = self.limits.tau_safe
        self.decisions.publish(decision)

    # ------------------------------------------------------------------ operator
    def on_set_mode(self, request: SetMode.Request, response: SetMode.Response) -> Any:
        """Mode changes; e-stop works from every mode and only an explicit change leaves it."""
        response.previous_mode = self.mode
        if request.mode not in MODE_NAMES:
            response.success = False
            response.message = f"unknown mode {request.mode}"
            return response
        if request.mode in (SetMode.Request.ESTOP, SetMode.Request.PAUSE, SetMode.Request.IDLE):
            self.stop_and_report(MODE_NAMES[request.mode])
        was_moving = self.mode in MOVING_MODES
        self.mode = request.mode
        if request.mode == SetMode.Request.HOME:
            self.go_home()
            self.mode = SetMode.Request.IDLE
        # The deadline starts when the arm may move. A change between execute and learn is no
        # fresh input: re-armed there, it gave a stream that had died just before the change up
        # to watchdog_s more (bench/faults.py saw the first stop after its switch to learn
        # 60-110 ms past the last proposal's deadline).
        if self.mode in MOVING_MODES and not was_moving:
            self.rearm_watchdog()
        self.publish_mode()
        response.success = True
        response.message = f"mode {MODE_NAMES[response.previous_mode]} -> {MODE_NAMES[self.mode]}"
        self.get_logger().info(response.message)
        return response

    def go_home(self) -> None:
        """The operator's home: checked like any motion (fresh, from the measured state); where
        it fails, stop instead."""
        home = self.shield.by_name["home"]
        verdict = self.shield.decide(home.index, np.zeros(len(self.actions)), self.arm_state())
        if verdict.plan is not None and verdict.executed.name == "home":
            self.send_plan(verdict.plan)
            return
        self.get_logger().warning(f"home refused ({verdict.reason}): stop")
        self.stop_and_report("home refused")

    # ------------------------------------------------------------------ outputs
    def send_stop(self, why: str) -> str:
        """Stop the arm; returns "" when it holds the measured pose, else what was done instead.

        - a finite joint state: one point at the measured pose (JTC rejects an empty trajectory);
        - none, or NaN, after a command: that command's point again, timed to arrive when it
          would have. A cubic is fixed by its ends, so from the state the arm reached this is the
          remainder of the motion the shield checked; JTC then holds at its end;
        - none, or NaN, before any command: nothing can be sent (a point needs positions) and
          the controller keeps holding where it is.
        The last two are logged once until a trustworthy joint state returns.
        """
        self.shield.planner.reset()
        if self.controller is None:
            return ""
        if self.joints is not None and np.all(np.isfinite(self.joints)):
            self._send_point(self.joints[:7], self.finger_target, STOP_SETTLE_S, at_rest=False)
            return ""
        state = "no joint state yet" if self.joints is None else "non-finite joint state"
        if self.last_command is not None:
            point, at_rest, end = self.last_command
            self._send_point(point[:7], float(point[7]),
                             max(end - time.monotonic(), STOP_SETTLE_S), at_rest)
            note = HELD_LAST_TARGET
        else:
            note = CONTROLLER_HOLDS
        if not self.untrusted_said:
            self.untrusted_said = True
            self.get_logger().error(f"stop ({why}) with {state}: {note.split(':', 1)[1]}")
        return note

    def stop_and_report(self, why: str) -> None:
        """Stop for the operator or the lifecycle; a stop without a trustworthy joint state also
        gets a ShieldDecision saying what was done."""
        note = self.send_stop(why)
        if note:
            self.publish_stop_decision(why, note, watchdog=Check.OK)

    def send_plan(self, plan: PlannedMotion) -> None:
        """One point at the primitive's end, at rest, timed to the primitive: JTC follows the
        cubic from the measured state that the shield checked."""
        self.finger_target = plan.finger_target
        self._send_point(plan.arm_target, plan.finger_target, plan.duration_s, at_rest=True)

    def _send_point(self, arm: np.ndarray, fingers: float, seconds: float, at_rest: bool) -> None:
        """at_rest: give zero end velocities (cubic spline); else positions only (a stop holds
        the measured pose and the controller brakes)."""
        self.last_command = (np.append(np.asarray(arm, float)[:7], fingers), at_rest,
                             time.monotonic() + seconds)
        traj = JointTrajectory()
        traj.header.stamp = self.get_clock().now().to_msg()
        traj.joint_names = list(JOINTS)
        point = JointTrajectoryPoint(positions=[float(v) for v in arm] + [float(fingers)],
                                     time_from_start=_duration(seconds))
        if at_rest:
            point.velocities = [0.0] * len(JOINTS)
        traj.points = [point]
        self.controller.publish(traj)

    def publish_decision(self, msg: ActionProposal, verdict: ShieldVerdict,
                         latency_ms: float) -> None:
        """The audit record of one decision."""
        self.counts["decisions"] += 1
        self.counts["interventions"] += int(verdict.intervened)
        d = ShieldDecision()
        d.header.stamp = self.get_clock().now().to_msg()
        d.observation_stamp = msg.observation_stamp
        d.proposed_action_index = int(msg.action_index)
        d.proposed_action_name = msg.action_name
        d.executed_action_index = verdict.executed.index
        d.executed_action_name = verdict.executed.name
        d.intervened = verdict.intervened
        for check in CHECKS:
            setattr(d, check, int(verdict.codes[check]))
        d.reason = verdict.reason
        d.constraint_value = float(msg.constraint_value)
        d.constraint_threshold = self.limits.tau_safe
        d.latency_ms = float(latency_ms)
        self.decisions.publish(d)
        self.publish_decision_marker(verdict)

    def publish_decision_marker(self, verdict: ShieldVerdict) -> None:
        """The last decision as text above the workspace: green executed, red replaced."""
        box = self.limits.workspace
        m = Marker(type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, id=0, ns="decision")
        m.header.frame_id = self.cfg["frames"]["base"]
        m.header.stamp = self.get_clock().now().to_msg()
        m.pose.position = Point(x=float(box.center[0]), y=float(box.center[1]),
                                z=float(box.max[2]) + 0.1)
        m.pose.orientation.w = 1.0
        m.scale.z = 0.05
        m.color = (ColorRGBA(r=1.0, g=0.2, b=0.2, a=1.0) if verdict.intervened
                   else ColorRGBA(r=0.2, g=1.0, b=0.2, a=1.0))
        m.text = (f"{verdict.proposed.name} -> {verdict.executed.name} ({verdict.reason})"
                  if verdict.intervened else verdict.executed.name)
        # One latched array holds zones and decision, so a late RViz still gets the zones.
        self.markers.publish(MarkerArray(markers=[*self.zone_markers(), m]))

    def publish_zones(self) -> None:
        """Keep-out zones and the workspace, latched for RViz."""
        self.markers.publish(MarkerArray(markers=self.zone_markers()))

    def zone_markers(self) -> list[Marker]:
        """Keep-out zones and the workspace as boxes in the base frame."""
        frame = self.cfg["frames"]["base"]
        out = MarkerArray()
        boxes = [(self.limits.workspace, ColorRGBA(r=0.2, g=0.6, b=1.0, a=0.08))]
        boxes += [(z, ColorRGBA(r=1.0, g=0.1, b=0.1, a=0.35)) for z in self.limits.keep_out_zones]
        for i, (box, colour) in enumerate(boxes):
            m = Marker(type=Marker.CUBE, action=Marker.ADD, id=i, ns=box.name, color=colour)
            m.header.frame_id = frame
            m.pose.position = Point(x=float(box.center[0]), y=float(box.center[1]),
                                    z=float(box.center[2]))
            m.pose.orientation.w = 1.0
            size = 2 * box.half_extents
            m.scale = Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2]))
            out.markers.append(m)
        return out.markers

    def publish_mode(self) -> None:
        """The current mode, latched, for the learner and the operator panel."""
        self.mode_pub.publish(String(data=MODE_NAMES[self.mode]))

    def publish_status(self) -> None:
        """diagnostic_msgs health: mode, activity and counters."""
        status = DiagnosticStatus(name="safari/shield", hardware_id="shield_node")
        status.level = DiagnosticStatus.OK if self.active else DiagnosticStatus.WARN
        if self.mode == SetMode.Request.ESTOP:
            status.level = DiagnosticStatus.ERROR
        status.message = f"{'active' if self.active else 'inactive'}, mode {MODE_NAMES[self.mode]}"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in self.counts.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics.publish(array)


def main(args: list[str] | None = None) -> None:
    """Run the shield; on Ctrl-C or SIGTERM it sends stop before the context goes down."""
    run_node(ShieldNode, args, before_shutdown=lambda node: node.send_stop("shutdown"))


if __name__ == "__main__":
    main()
