"""sim_node: the MuJoCo tabletop as a robot on ROS 2 (sensors, controller topic, task monitor).

Publishes the RGB-D camera (rgb8 and 32FC1 metres, with CameraInfo), /joint_states and /clock;
accepts trajectory_msgs/JointTrajectory on the controller topic as ros2_control's
joint_trajectory_controller does (bad commands are refused with a logged reason and the arm
holds); publishes safari_msgs/Feedback per control tick; serves the RunEpisode action and
services to reset and to set the instruction.

Stepping is lockstep: a camera frame is published at the start of each control tick and the
simulation advances one tick when the controller command of that frame arrives (or when
`command_timeout_s` of wall time passes: the arm then keeps its last command, as a real arm
would). So the stack runs on simulated time as fast as it can think (real_time_factor 0), or no
faster than real_time_factor x real time.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from safari_msgs.action import RunEpisode
from safari_msgs.msg import Feedback, ShieldDecision
from safari_msgs.srv import SetInstruction
from safari_ros.bags.images import numpy_to_image
from safari_ros.nodes.common import (
    LATCHED_QOS,
    RELIABLE_QOS,
    declare,
    node_config,
    run_node,
    stamp_ns,
)
from safari_ros.sim import CommandRejectedError, TabletopSim, TaskError

SENSOR_PUB_QOS = 5  # REP-2003: sensor publishers keep the default (reliable) profile


def _time_msg(seconds: float) -> Any:
    return Time(nanoseconds=round(seconds * 1e9)).to_msg()


RESET_GAP_S = 0.2  # simulated time a reset takes (> perception's sync tolerance)


class SimNode(Node):
    """Wraps TabletopSim; one lockstep loop thread owns the simulator."""

    def __init__(self) -> None:
        super().__init__("sim_node")
        self.cfg = node_config(self)
        t = self.cfg["topics"]
        self.joint_rate = declare(self, "joint_state_rate_hz", 50.0, "joint state rate (sim time)")
        self.camera_rate = declare(self, "camera_rate_hz", 10.0,
                                   "unused in lockstep: one frame per control tick")
        self.rtf = declare(self, "real_time_factor", 0.0,
                           "max speed vs real time; 0 = as fast as the stack allows")
        self.command_timeout = declare(self, "command_timeout_s", 2.0,
                                       "wall time a tick waits for its controller command")
        self.split = declare(self, "split", "train", "task split: train or heldout")
        self.seed = declare(self, "seed", 0, "seed of the first episode (then +1 per episode)")
        self.sim = TabletopSim(self.cfg, split=self.split)
        self.lock = threading.Lock()  # the simulator is not thread-safe
        self.command_event = threading.Event()
        self.command_lock = threading.Lock()
        self.pending: JointTrajectory | None = None
        self.awaiting = False  # a frame is out and its command has not arrived yet
        self.episode_id = 0
        self.step_index = 0
        self.running = False  # an episode is in progress (frames are published)
        self.frame_stamp = 0.0
        # The simulator restarts its clock at every reset; ROS time must never go backwards.
        self.clock_base = 0.0
        self.episode_done = threading.Event()
        self.step_listeners: list[Any] = []
        self.decisions: dict[int, ShieldDecision] = {}  # by observation stamp, for RunEpisode

        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.color_pub = self.create_publisher(Image, t["color_image"], SENSOR_PUB_QOS)
        self.color_info_pub = self.create_publisher(CameraInfo, t["color_info"], SENSOR_PUB_QOS)
        self.depth_pub = self.create_publisher(Image, t["depth_image"], SENSOR_PUB_QOS)
        self.depth_info_pub = self.create_publisher(CameraInfo, t["depth_info"], SENSOR_PUB_QOS)
        self.joint_pub = self.create_publisher(JointState, t["joint_states"], SENSOR_PUB_QOS)
        self.feedback_pub = self.create_publisher(Feedback, t["feedback"], RELIABLE_QOS)
        self.instruction_pub = self.create_publisher(String, t["instruction"], LATCHED_QOS)
        group = ReentrantCallbackGroup()
        self.create_subscription(JointTrajectory, t["controller_command"], self.on_command,
                                 RELIABLE_QOS, callback_group=group)
        self.create_subscription(ShieldDecision, t["shield_decision"], self.on_decision,
                                 RELIABLE_QOS, callback_group=group)
        self.create_service(Trigger, "~/reset", self.on_reset, callback_group=group)
        self.create_service(SetInstruction, "~/set_instruction", self.on_set_instruction,
                            callback_group=group)
        self.episode_server = ActionServer(
            self, RunEpisode, "/safari/run_episode", self.execute_episode,
            goal_callback=self.on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=group)
        self.info_msg = self._camera_info()
        self.stop_loop = threading.Event()
        self.publish_state()
        self.loop = threading.Thread(target=self.run_loop, name="sim_loop", daemon=True)
        self.loop.start()

    # ------------------------------------------------------------------ ROS inputs
    def on_command(self, msg: JointTrajectory) -> None:
        """A controller command (JTC semantics); validated by the simulator when applied.

        During an episode a command answers the frame that is out; one arriving while a tick
        is being simulated answers no frame and is dropped (applying it a tick late would pin
        the following commands, and their rewards, to the wrong frames)."""
        with self.command_lock:
            if self.running and not self.awaiting:
                self.get_logger().warning(
                    "controller command arrived while a tick was being simulated: dropped "
                    "(lockstep: one command answers one camera frame)", throttle_duration_sec=5.0)
                return
            self.pending = msg
        self.command_event.set()

    def on_decision(self, msg: ShieldDecision) -> None:
        """Remember what the shield executed for each frame (reported by RunEpisode)."""
        self.decisions[stamp_ns(msg.observation_stamp)] = msg
        while len(self.decisions) > 100:
            self.decisions.pop(next(iter(self.decisions)))

    def apply(self, msg: JointTrajectory) -> None:
        """Apply a trajectory; a refused one is logged and the arm holds (sim.hold inside).
        As JTC: points with velocities are followed by cubic splines, without by straight lines
        (velocities on some points only are refused by the simulator's validation)."""
        points = [(list(p.positions), p.time_from_start.sec + p.time_from_start.nanosec * 1e-9)
                  for p in msg.points]
        rates = ([list(p.velocities) for p in msg.points]
                 if any(len(p.velocities) for p in msg.points) else None)
        try:
            self.sim.apply_joint_trajectory(list(msg.joint_names), points, rates)
        except CommandRejectedError as exc:
            self.get_logger().warning(f"trajectory refused, holding: {exc}")

    def reset_episode(self, instruction: str = "") -> str:
        """Start a new episode (sampled task, or the one `instruction` names)."""
        with self.lock:
            # The reset moves the arm at once; its new state gets a later stamp than any state
            # before it (by more than perception's sync tolerance) and goes out before the first
            # frame. Otherwise the frame shared its stamp with the last pre-reset joint state,
            # and perception and the shield took that one: the shield planned from the old pose
            # and the arm raced back there over the speed limit at step 0.
            self.clock_base += self.sim.sim_time + RESET_GAP_S
            self.sim.reset(seed=self.seed + self.episode_id, task=instruction or None)
            self.episode_id += 1
            self.step_index = 0
            self.running = True
            self.episode_done.clear()
        self.publish_state()
        self.instruction_pub.publish(String(data=self.sim.instruction))
        self.get_logger().info(f"episode {self.episode_id}: {self.sim.instruction!r}")
        return self.sim.instruction

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        """New episode with a sampled task."""
        response.message = self.reset_episode()
        response.success = True
        return response

    def on_set_instruction(self, request: SetInstruction.Request,
                           response: SetInstruction.Response) -> Any:
        """New episode with the task the instruction names (refused if it names none)."""
        try:
            response.message = self.reset_episode(request.instruction)
            response.success = True
            response.instruction_id = self.episode_id
        except TaskError as exc:
            response.success = False
            response.message = str(exc)
        return response

    # ------------------------------------------------------------------ RunEpisode
    def on_goal(self, goal: RunEpisode.Goal) -> GoalResponse:
        """One episode at a time."""
        return GoalResponse.REJECT if self.running else GoalResponse.ACCEPT

    def execute_episode(self, handle: Any) -> RunEpisode.Result:
        """Reset with the goal's instruction, relay per-step feedback, report the outcome."""
        goal = handle.request
        result = RunEpisode.Result()
        try:
            self.reset_episode(goal.instruction)
        except TaskError as exc:
            self.get_logger().error(f"RunEpisode refused: {exc}")
            handle.abort()
            return result
        max_steps = goal.max_steps or self.sim.episode_steps
        steps: list[Feedback] = []

        interventions = 0

        def listener(fb: Feedback, decision: ShieldDecision | None) -> None:
            nonlocal interventions
            steps.append(fb)
            # No decision for the frame means the shield never answered: the arm held.
            intervened = decision is None or decision.intervened
            interventions += int(intervened)
            handle.publish_feedback(RunEpisode.Feedback(
                step=fb.step, action_name=decision.executed_action_name if decision else "none",
                intervened=intervened, reward=fb.reward, cost=fb.cost))
            if len(steps) >= max_steps and not fb.done:
                self.end_episode()

        self.step_listeners.append(listener)
        try:
            while not self.episode_done.wait(0.1):
                if self.stop_loop.is_set():
                    handle.abort()
                    return result
                if handle.is_cancel_requested:
                    self.end_episode()
                    handle.canceled()
                    return result
        finally:
            self.step_listeners.remove(listener)
        result.success = any(fb.success for fb in steps)
        result.episode_return = float(sum(fb.reward for fb in steps))
        result.episode_cost = float(sum(fb.cost for fb in steps))
        result.steps = len(steps)
        result.interventions = interventions
        handle.succeed()
        return result

    def end_episode(self) -> None:
        """Stop publishing frames; the arm holds."""
        with self.lock:
            self.running = False
            self.sim.hold()
        self.episode_done.set()

    # ------------------------------------------------------------------ lockstep loop
    def run_loop(self) -> None:
        """Frame -> wait for the command -> advance one tick -> feedback, while an episode runs."""
        period = self.sim.control_period
        while not self.stop_loop.is_set():
            if not self.running:
                # Between episodes the controller still takes commands (an operator's HOME,
                # a stop); time goes on and the arm follows or holds.
                with self.command_lock:
                    command, self.pending = self.pending, None
                if command is not None:
                    with self.lock:
                        self.apply(command)
                self.advance_and_publish(0.1)
                time.sleep(0.05)
                continue
            wall_start = time.monotonic()
            with self.command_lock:
                self.command_event.clear()
                self.pending, self.awaiting = None, True
            self.publish_frame()
            self.command_event.wait(self.command_timeout)
            with self.command_lock:
                executed, self.pending, self.awaiting = self.pending, None, False
            with self.lock:
                if executed is not None:
                    self.apply(executed)
            report = self.advance_and_publish(period)
            self.publish_feedback(report)
            if self.rtf > 0:
                time.sleep(max(0.0, period / self.rtf - (time.monotonic() - wall_start)))
        self.sim.close()  # the GL context belongs to this thread

    def advance_and_publish(self, dt: float) -> Any:
        """Advance dt of sim time, publishing /clock and joint states at their rate."""
        n = max(1, round(dt * self.joint_rate))
        reward, cost, success = 0.0, 0, False
        sources = dict.fromkeys(self.sim.cost_source_names, 0)
        for _ in range(n):
            with self.lock:
                stops = self.sim.reflex_stops
                r = self.sim.advance(dt / n)
                if self.sim.reflex_stops > stops:  # as the Panda reports its reflex
                    self.get_logger().warning(
                        "contact reflex: the arm was pushed back over "
                        f"{self.sim.contact_reflex_n:g} N and holds where it is")
            reward += r.reward
            cost |= r.cost
            success |= r.success
            for k, v in r.cost_sources.items():
                sources[k] |= v
            self.publish_state()
        return reward, cost, sources, success

    def publish_state(self) -> None:
        """/clock and /joint_states at the current sim time."""
        with self.lock:
            js = self.sim.joint_state()
        stamp = _time_msg(self.clock_base + js.stamp)
        self.clock_pub.publish(Clock(clock=stamp))
        msg = JointState(name=list(js.name), position=js.position.tolist(),
                         velocity=js.velocity.tolist(), effort=js.effort.tolist())
        msg.header.stamp = stamp
        msg.header.frame_id = self.cfg["frames"]["base"]
        self.joint_pub.publish(msg)

    def publish_frame(self) -> None:
        """The RGB-D frame that starts a control tick (both images share one stamp)."""
        with self.lock:
            rgb, depth = self.sim.render_rgbd()
            self.frame_stamp = self.clock_base + self.sim.sim_time
        stamp = _time_msg(self.frame_stamp)
        frame = self.cfg["frames"]["camera_optical"]
        for pub, info_pub, array, encoding in ((self.color_pub, self.color_info_pub, rgb, "rgb8"),
                                               (self.depth_pub, self.depth_info_pub, depth,
                                                "32FC1")):
            msg = Image(**numpy_to_image(array, encoding))
            msg.header.stamp, msg.header.frame_id = stamp, frame
            self.info_msg.header.stamp, self.info_msg.header.frame_id = stamp, frame
            info_pub.publish(self.info_msg)
            pub.publish(msg)

    def publish_feedback(self, report: tuple[float, int, dict[str, int], bool]) -> None:
        """Reward and cost of the tick that started at the last frame."""
        reward, cost, sources, success = report
        self.step_index += 1
        truncated = self.step_index >= self.sim.episode_steps and not success
        fb = Feedback(episode_id=self.episode_id, step=self.step_index - 1, reward=float(reward),
                      cost=float(cost), cost_sources=list(sources),
                      cost_active=[bool(v) for v in sources.values()],
                      done=bool(success or truncated), truncated=bool(truncated),
                      success=bool(success))
        fb.header.stamp = _time_msg(self.frame_stamp)
        fb.header.frame_id = self.cfg["frames"]["base"]
        self.feedback_pub.publish(fb)
        decision = self.decisions.pop(stamp_ns(fb.header.stamp), None)
        for listener in list(self.step_listeners):
            listener(fb, decision)
        if fb.done:
            self.end_episode()

    def _camera_info(self) -> CameraInfo:
        info = self.sim.camera_info()
        return CameraInfo(width=info["width"], height=info["height"],
                          distortion_model=info["distortion_model"], d=info["d"], k=info["k"],
                          r=info["r"], p=info["p"])

    def shutdown(self) -> None:
        """Stop the loop thread and release the renderer."""
        self.stop_loop.set()
        self.command_event.set()
        self.loop.join(timeout=5)


def main(args: list[str] | None = None) -> None:
    """Run the simulator node."""
    run_node(SimNode, args, before_shutdown=lambda node: node.shutdown(), threads=4)


if __name__ == "__main__":
    main()
