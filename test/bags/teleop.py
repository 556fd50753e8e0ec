"""Simulated teleoperation logs of a robot that did not run SAFARI, for the motion-labelling tests
and bench/bench_labelling.py.

An operator drives the MuJoCo tabletop towards the task with smooth joint-space motions, never
with SAFARI's primitives: what to do next comes from the scripted oracle (so the episodes make
progress and some succeed), how it is done is the operator's own: each motion is a
JointTrajectory to an IK goal of its own length (0.85-1.15 step_m, a little off-axis) and
duration (0.85-1.15 primitive durations), straight in joint space. With probability `perturb` a
segment is something else: a return home at the operator's speed, a diagonal move, a move twice
as fast (neither of which any primitive makes), or a drift down towards the table (costs). Idle
time is a stop. The gripper is commanded on its own controller's topic, which the default topic
map does not read, so its labels come from the measured fingers (grasps stop them on the object).

The log is written with mcap's ROS 2 writer (mcap_ros2.writer, not SAFARI's recorder) as a bare
.mcap file: camera colour and depth at `camera_hz`, /joint_states (9 joints, with velocities) at
`joint_hz`, the arm's commands when `commands`, and optionally an annotation file beside it
(episode boundaries, instruction, success). `TeleopTruth` keeps the ground truth: the operator's
segments with the primitive each one is (or "none"), and the ticks the simulator counted as
costly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from mcap_ros2.writer import Writer

from safari_ros.bags.typestore import safari_typestore
from safari_ros.robot import kinematics as kin
from safari_ros.sim import JOINT_NAMES, ScriptedOracle, TabletopSim
from safari_ros.sim.tasks import TEMPLATES

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
EPISODE_GAP_S = 3.0  # nothing recorded between episodes (more than the topic map's gap)
ARM_TOPIC = "/panda_arm_controller/joint_trajectory"
GRIPPER_TOPIC = "/panda_hand_controller/joint_trajectory"  # not in the default topic map
NONE = "none"  # a segment that no primitive makes
MOVES = ("move_forward", "move_backward", "move_left", "move_right", "move_up", "move_down")
PERTURBATIONS = ("home", "diagonal", "fast", "drift_down")
TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/JointState",
         "trajectory_msgs/msg/JointTrajectory")


@dataclass(frozen=True)
class Segment:
    """One motion of the operator: its span in the bag's stamps and the primitive it is."""

    start_ns: int
    end_ns: int
    intent: str  # an action name, or NONE


@dataclass
class TeleopTruth:
    """Ground truth of a teleoperation log."""

    path: Path
    segments: list[Segment] = field(default_factory=list)
    costly_ticks: list[int] = field(default_factory=list)  # stamps of ticks the sim found costly
    episodes: list[dict[str, Any]] = field(default_factory=list)  # start_ns, end_ns, success
    start_ns: int = 0  # the log's first message

    def intent(self, start_ns: int, end_ns: int, share: float = 0.75) -> str | None:
        """The intent of the segments that cover at least `share` of [start, end] (one motion
        may be several segments in a row); None: the span mixes motions."""
        cover: dict[str, int] = {}
        for seg in self.segments:
            overlap = min(end_ns, seg.end_ns) - max(start_ns, seg.start_ns)
            if overlap > 0:
                cover[seg.intent] = cover.get(seg.intent, 0) + overlap
        best = max(cover, key=cover.__getitem__, default=None)
        return best if best is not None and cover[best] >= share * (end_ns - start_ns) else None

    def costly(self, start_ns: int, end_ns: int) -> bool:
        """Whether the simulator counted a cost in [start, end]."""
        t = np.asarray(self.costly_ticks)
        return bool(np.any((t > start_ns) & (t <= end_ns)))


def _time(ns: int) -> dict[str, int]:
    return {"sec": ns // NS, "nanosec": ns % NS}


def _duration(seconds: float) -> dict[str, int]:
    return _time(round(seconds * NS))


class _Log:
    """The mcap ROS 2 writer with the schemas this log uses."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("wb")
        self.writer = Writer(self.file)
        store = safari_typestore()
        # The schemas carry the definitions as ROS 2 writes them (rosbags renders the text).
        self.schemas = {t: self.writer.register_msgdef(t, store.generate_msgdef(t, 2)[0])
                        for t in TYPES}
        self.first_ns: int | None = None

    def put(self, topic: str, msgtype: str, message: dict[str, Any], log_ns: int) -> None:
        self.first_ns = log_ns if self.first_ns is None else min(self.first_ns, log_ns)
        self.writer.write_message(topic, self.schemas[msgtype], message, log_time=log_ns,
                                  publish_time=log_ns)

    def close(self) -> None:
        self.writer.finish()
        self.file.close()


class _Operator:
    """Drives the simulator for one log and records it."""

    def __init__(self, sim: TabletopSim, log: _Log, truth: TeleopTruth, rng: np.random.Generator,
                 *, commands: bool, camera_hz: float, joint_hz: float) -> None:
        self.sim, self.log, self.truth, self.rng = sim, log, truth, rng
        self.commands = commands
        self.tick_s = 1.0 / joint_hz
        self.frame_every = max(1, round(joint_hz / camera_hz))
        self.ticks = 0
        self.base_ns = T0
        self.step_m, self.duration_s = sim.step_m, sim.duration_s
        self.frame_id = sim.cfg["frames"]["camera_optical"]

    def now_ns(self) -> int:
        return self.base_ns + round(self.sim.sim_time * NS)

    # ------------------------------------------------------------------ recording
    def record(self, seconds: float) -> bool:
        """Run the simulator for `seconds`, recording joint states every tick and frames every
        frame_every ticks; returns whether the task succeeded meanwhile."""
        success = False
        if self.ticks == 0:
            self.joint_state()  # the arm's state is known before the first frame of an episode
        for _ in range(max(1, round(seconds / self.tick_s))):
            if self.ticks % self.frame_every == 0:
                self.frame()
            report = self.sim.advance(self.tick_s)
            self.ticks += 1
            success |= report.success
            if report.cost:
                self.truth.costly_ticks.append(self.now_ns())
            self.joint_state()
        return success

    def frame(self) -> None:
        t = self.now_ns()
        rgb, depth = self.sim.render_rgbd()
        h, w = depth.shape
        header = {"stamp": _time(t), "frame_id": self.frame_id}
        self.log.put("/camera/color/image_raw", TYPES[0], {
            "header": header, "height": h, "width": w, "encoding": "rgb8", "is_bigendian": 0,
            "step": w * 3, "data": rgb.tobytes()}, t + 3_000_000)  # received 3 ms later
        self.log.put("/camera/depth/image_raw", TYPES[0], {
            "header": header, "height": h, "width": w, "encoding": "32FC1", "is_bigendian": 0,
            "step": w * 4, "data": depth.astype("<f4").tobytes()}, t + 4_000_000)

    def joint_state(self) -> None:
        t = self.now_ns()
        js = self.sim.joint_state()
        self.log.put("/joint_states", TYPES[1], {
            "header": {"stamp": _time(t), "frame_id": ""}, "name": list(JOINT_NAMES),
            "position": js.position.tolist(), "velocity": js.velocity.tolist(), "effort": []},
            t + 1_000_000)

    def command(self, topic: str, names: Sequence[str], positions: np.ndarray,
                seconds: float) -> None:
        """Send a one-point JointTrajectory (the controller starts from the measured state)."""
        self.sim.apply_joint_trajectory(names, [(positions.tolist(), seconds)])
        if topic == ARM_TOPIC and not self.commands:
            return
        self.log.put(topic, TYPES[2], {
            "header": {"stamp": _time(0), "frame_id": ""},  # zero: "start now", as JTC reads it
            "joint_names": list(names),
            "points": [{"positions": positions.tolist(), "velocities": [], "accelerations": [],
                        "effort": [], "time_from_start": _duration(seconds)}]},
            self.now_ns())

    # ------------------------------------------------------------------ motions
    def segment(self, intent: str, seconds: float) -> bool:
        """Record `seconds` of the motion just commanded as one segment of `intent`."""
        start = self.now_ns()
        success = self.record(seconds)
        self.truth.segments.append(Segment(start, self.now_ns(), intent))
        return success

    def jitter(self) -> float:
        return float(self.rng.uniform(0.85, 1.15))

    def move(self, direction: np.ndarray, intent: str, speed: float = 1.0) -> bool:
        """A straight joint-space motion to an IK goal `direction` (in step_m) away."""
        q = self.sim.joint_state().position[:7]
        tcp, rot = kin.tcp_pose(q)
        lateral = self.rng.normal(0.0, 0.05, 3) * (np.asarray(direction) == 0)
        goal = tcp + (np.asarray(direction, float) * self.jitter() + lateral) * self.step_m
        ik = kin.solve_ik(goal, rot, q, q_rest=self.sim.home_q, limit_margin=0.1)
        if np.linalg.norm(kin.tcp_pose(ik.q)[0] - goal) > 0.25 * self.step_m:
            intent = NONE  # the arm cannot make this move: not the primitive any more
        seconds = self.duration_s * self.jitter() / speed
        self.command(ARM_TOPIC, JOINT_NAMES[:7], ik.q, seconds)
        return self.segment(intent, seconds)

    def gripper(self, intent: str) -> bool:
        target = self.sim.gripper_open if intent == "open_gripper" else 0.0
        finger = self.sim.joint_state().position[7]
        seconds = self.duration_s * self.jitter()
        self.command(GRIPPER_TOPIC, JOINT_NAMES[7:], np.full(2, target), seconds)
        # Fingers already there: nothing moves, which is a stop.
        return self.segment(intent if abs(finger - target) > 0.005 else "stop", seconds)

    def home(self) -> bool:
        q = self.sim.joint_state().position[:7]
        reach = float(np.max(np.abs(self.sim.home_q - q)))
        if reach < 0.05:
            return self.idle()
        # The operator's own pace: about the planner's, jittered.
        seconds = max(self.duration_s, 1.5 * reach / 0.3 * self.rng.uniform(0.9, 1.2))
        self.command(ARM_TOPIC, JOINT_NAMES[:7], self.sim.home_q, seconds)
        return self.segment("home", seconds)

    def idle(self) -> bool:
        return self.segment("stop", self.duration_s * self.jitter())


def write_teleop_log(
    path: str | Path,
    cfg: dict[str, Any],
    *,
    episodes: int = 3,
    seed: int = 0,
    commands: bool = True,
    annotate: bool = True,
    perturb: float = 0.25,
    max_segments: int = 45,
    camera_hz: float = 10.0,
    joint_hz: float = 50.0,
    templates: Sequence[str] = TEMPLATES,
    split: str = "train",
) -> TeleopTruth:
    """Record `episodes` teleoperated episodes (templates in turn) into a new .mcap file."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    sim = TabletopSim(cfg, split=split)
    names = [a.name for a in sim.actions]
    log = _Log(path)
    truth = TeleopTruth(path)
    op = _Operator(sim, log, truth, rng, commands=commands, camera_hz=camera_hz,
                   joint_hz=joint_hz)
    annotations = []
    try:
        for e in range(episodes):
            sim.reset(seed=int(rng.integers(2**31)), template=templates[e % len(templates)])
            oracle = ScriptedOracle(sim)
            start = op.now_ns()
            drift, success = 0, False
            for _ in range(max_segments):
                if drift:
                    # Down until the simulator counts a cost (the table) or the drift ends.
                    drift -= 1
                    costs = len(truth.costly_ticks)
                    success |= op.move(np.array([0.0, 0.0, -1.0]), "move_down")
                    drift = 0 if len(truth.costly_ticks) > costs else drift
                elif rng.random() < perturb:
                    kind = PERTURBATIONS[int(rng.integers(len(PERTURBATIONS)))]
                    if kind == "home":
                        success |= op.home()
                    elif kind == "diagonal":
                        d = np.array([rng.choice([-1.0, 1.0]), rng.choice([-1.0, 1.0]), 0.0])
                        success |= op.move(d, NONE)
                    elif kind == "fast":
                        d = np.zeros(3)
                        d[int(rng.integers(2))] = rng.choice([-1.0, 1.0])
                        success |= op.move(d * 2.0, NONE, speed=1.0)
                    else:
                        drift = 8
                    oracle.reset()  # the operator re-plans after a detour
                else:
                    intent = names[oracle.act()]
                    if intent in MOVES:
                        delta = np.array(sim.actions[names.index(intent)].delta)
                        success |= op.move(delta, intent)
                    elif intent in ("open_gripper", "close_gripper"):
                        success |= op.gripper(intent)
                    elif intent == "home":
                        success |= op.home()
                    else:
                        success |= op.idle()
                if success:
                    break
            end = op.now_ns()
            truth.episodes.append({"start_ns": start, "end_ns": end, "success": bool(success),
                                   "instruction": sim.instruction})
            annotations.append((start, end, sim.instruction, bool(success)))
            # The next episode's clock starts after a quiet gap (reset sets sim time to 0).
            op.base_ns = end + round(EPISODE_GAP_S * NS)
            op.ticks = 0
    finally:
        sim.close()
        log.close()
    truth.start_ns = int(log.first_ns or T0)
    if annotate:
        doc = {"time": "relative", "episodes": [
            {"start": (s - truth.start_ns) / NS, "end": (t - truth.start_ns) / NS,
             "instruction": text, "success": ok} for s, t, text, ok in annotations]}
        path.with_name(f"{path.stem}.annotations.yaml").write_text(yaml.safe_dump(doc))
    return truth
