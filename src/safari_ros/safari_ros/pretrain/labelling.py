"""Motion labelling: the logs of a robot that did not run SAFARI as pre-training steps.

A log with only camera frames (+ depth), joint states and perhaps the controllers' commands
(trajectory_msgs/JointTrajectory) has no action and no cost. Each step gets them here:

- Steps. A step is one primitive's duration (`actions.duration_s`) of motion, observed from the
  last camera frame before it starts (at most `labelling.max_frame_age_s` old). Steps follow each
  other on that grid from the first frame; a recorded command that comes at least half a step
  after the command before it (an operator's new motion, not a streamed setpoint) ends the
  running step and starts the next one, so that steps line up with the commands. Steps shorter
  than half a primitive are not steps.
- Action. Every configured primitive is planned from the step's recorded start (joints,
  velocities, finger opening) with the stack's own planner (robot.primitives), and its predicted
  TCP position and finger opening at the step's end are compared with the recorded ones: the
  commanded motion where commands were recorded (an arm blocked by contact still shows what it
  was sent to do), else the measured one. The residual is the distance in units of
  `actions.step_m`, the fingers weighed by `labelling.gripper_unit_m` per step; a gripper
  primitive explains fingers that moved that far towards its target (a grasp stops them on the
  object). The best primitive labels the step when its residual is at most
  `labelling.residual_threshold` and no primitive that predicts a different motion comes within
  `labelling.ambiguity_margin` of it; other steps are counted and skipped, not guessed.
  Primitives that predict the same motion (close_gripper on a closed gripper, stop) are told
  apart in favour of stop: a no-op is a stop.
- Cost. The measured motion over the step, as cubics through the recorded joint states (what a
  joint_trajectory_controller follows between points with velocities), goes through the shield's
  own hard-limit checks (safety.motion.MotionChecker: arm volumes against the workspace, the
  table and the keep-out zones with their margins, joint limits and speeds): cost 1 where the
  shield would have refused that motion, with the checks that failed as the cost sources. The
  TCP speed limit is applied to the measured speeds (the shield's is a bound for predictions).
- Instruction and success. From an annotation file beside the bag (`annotation_path`): episode
  boundaries, instruction, success; steps outside its episodes are skipped. Without one, the log
  is one stream (cut at gaps and episode markers like any bag) of unknown success: it trains the
  alignment and safety terms, not behaviour cloning (whose weight is the episode's success).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from safari_ros.bags import (
    Episode,
    LabelSettings,
    MotionLog,
    ReadReport,
    Step,
    TopicMap,
    read_motion_logs,
)
from safari_ros.config import ConfigError, action_specs, safety_limits
from safari_ros.robot import kinematics as kin
from safari_ros.robot.primitives import PlannedMotion, PrimitivePlanner
from safari_ros.robot.trajectory import Cubic
from safari_ros.safety.motion import HARD_LIMITS, Check, MotionChecker

__all__ = [
    "ANNOTATION_SUFFIXES",
    "AnnotatedEpisode",
    "MotionLabeller",
    "RecordedMotion",
    "WindowLabel",
    "annotation_path",
    "label_summary",
    "load_annotations",
    "merge_label_stats",
]

NS = 1_000_000_000
ANNOTATION_SUFFIXES = (".yaml", ".yml", ".json")
# Reasons a step is skipped, counted in ReadReport.skipped as "unlabelled_<reason>".
NO_PRIMITIVE, AMBIGUOUS, NO_JOINT_STATES, NO_FRAME, OUTSIDE = (
    "no_primitive", "ambiguous", "no_joint_states", "no_frame", "outside_episodes")


@dataclass(frozen=True)
class RecordedMotion(PlannedMotion):
    """A stretch of recorded motion in the form the shield's checks take a planned one: the cubic
    Hermite through the recorded states at its two ends, end velocity included (a planned
    motion ends at rest)."""

    arm_end_velocity: np.ndarray = field(default_factory=lambda: np.zeros(7))

    @property
    def cubic(self) -> Cubic:
        """The joint-space cubic from the recorded start to the recorded end state."""
        return Cubic(self.arm_start, self.arm_start_velocity, self.arm_target, self.duration_s,
                     self.arm_end_velocity)


@dataclass
class WindowLabel:
    """The labelling of one step: the motion's span, the frame it is observed from, the label
    (None: skipped, `reason` says why), the residual of the best primitive and the cost."""

    start_ns: int
    end_ns: int
    frame: int | None = None  # index into MotionLog.frame_stamps
    action: int | None = None
    residual: float = float("nan")  # best primitive's residual (step_m units); NaN: not planned
    reason: str = ""  # "" when labelled
    commanded: bool = False  # the motion explained was the commanded one
    cost: float = 0.0
    cost_sources: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class AnnotatedEpisode:
    """One episode of an annotation file, in the bag's stamps (ns)."""

    start_ns: int
    end_ns: int
    instruction: str | None = None
    success: bool = False


def annotation_path(bag: str | os.PathLike[str]) -> Path | None:
    """The annotation file of a bag, if it has one: `annotations.yaml` (or .yml / .json) inside a
    bag directory, or `<bag name>.annotations.yaml` beside the bag (a directory or a file; for a
    file the name is its stem: `teleop.mcap` -> `teleop.annotations.yaml`)."""
    path = Path(bag)
    candidates = []
    if path.is_dir():
        candidates += [path / f"annotations{s}" for s in ANNOTATION_SUFFIXES]
    stem = path.name if path.is_dir() else path.stem
    candidates += [path.parent / f"{stem}.annotations{s}" for s in ANNOTATION_SUFFIXES]
    return next((p for p in candidates if p.is_file()), None)


def load_annotations(path: str | os.PathLike[str], start_ns: int) -> list[AnnotatedEpisode]:
    """Episodes of an annotation file (YAML or JSON):

        time: relative        # start/end in seconds from the bag's first message (what
                              # `ros2 bag info` and bag viewers show), or `absolute` (Unix s)
        episodes:
          - {start: 0.0, end: 12.5, instruction: "lift the red cube", success: true}

    Raises ConfigError naming the file and the entry on any problem."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())  # JSON is YAML
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"annotation file {p}: cannot read it: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("episodes"), list):
        raise ConfigError(f"annotation file {p}: needs a list under 'episodes'")
    base = {"relative": start_ns, "absolute": 0}.get(str(data.get("time", "relative")))
    if base is None:
        raise ConfigError(f"annotation file {p}: time must be 'relative' or 'absolute'")
    episodes = []
    for k, entry in enumerate(data["episodes"]):
        try:
            start, end = float(entry["start"]), float(entry["end"])
            instruction = entry.get("instruction")
            success = entry.get("success", False)
            if not end > start or not isinstance(success, bool):
                raise ValueError("needs end > start and success true or false")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"annotation file {p}: episode {k}: {exc!r}") from exc
        episodes.append(AnnotatedEpisode(base + round(start * NS), base + round(end * NS),
                                         None if instruction is None else str(instruction),
                                         success))
    return sorted(episodes, key=lambda e: e.start_ns)


def _file_sha256(path: Path | None) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None


class _Setpoints:
    """Where the controllers were told each joint should be, from the recorded commands, as
    ros2_control's joint_trajectory_controller runs them: a new command for a joint preempts the
    one before; it starts from the measured position when its first point lies in the future,
    goes linearly between points and holds the last one."""

    def __init__(self, log: MotionLog) -> None:
        self.log = log
        self.by_joint: dict[str, list[tuple[int, int, int]]] = {}  # joint -> (stamp, cmd, col)
        for c, command in enumerate(log.commands):
            for col, name in enumerate(command.names):
                self.by_joint.setdefault(name, []).append((command.stamp_ns, c, col))
        for entries in self.by_joint.values():
            entries.sort()
        self.stamps = {n: np.array([e[0] for e in v]) for n, v in self.by_joint.items()}

    def at(self, name: str, t_ns: int) -> float | None:
        """The setpoint of joint `name` at t, None before any command for it."""
        stamps = self.stamps.get(name)
        if stamps is None:
            return None
        k = int(np.searchsorted(stamps, t_ns, side="right")) - 1
        if k < 0:
            return None
        stamp, c, col = self.by_joint[name][k]
        command = self.log.commands[c]
        times, positions = command.times_s, command.positions[:, col]
        if len(times) == 0:
            return None
        if times[0] > 0:
            if not self.log.joints.covers([name], stamp, stamp):
                return None
            start = float(self.log.joints.at([name], stamp)[0])
            times, positions = np.concatenate([[0.0], times]), np.concatenate([[start], positions])
        return float(np.interp((t_ns - stamp) / NS, times, positions))

    def change(self, names: Sequence[str], t0: int, t1: int) -> np.ndarray | None:
        """The commanded change of each joint over [t0, t1], None unless every joint of `names`
        is under command at t1 (before its first command at t0, the change counts from the
        measured position)."""
        out = []
        for name in names:
            end = self.at(name, t1)
            if end is None:
                return None
            begin = self.at(name, t0)
            if begin is None:
                begin = float(self.log.joints.at([name], t0)[0])
            out.append(end - begin)
        return np.asarray(out)


class MotionLabeller:
    """Labels steps of logs without recorded actions with the configured primitives and costs
    them with the shield's hard-limit checks; see the module docstring."""

    def __init__(self, cfg: dict[str, Any], settings: LabelSettings | None = None) -> None:
        self.settings = settings or LabelSettings()
        self.actions = action_specs(cfg)
        self.names = [a.name for a in self.actions]
        self.stop = self.names.index("stop")
        self.planner = PrimitivePlanner(cfg)
        limits = safety_limits(cfg)
        self.checker = MotionChecker(limits, float(cfg["safety"]["sweep_resolution_m"]))
        self.ee_speed_limit = limits.ee_speed_limit_mps
        self.step_m = float(cfg["actions"]["step_m"])
        self.duration_ns = round(float(cfg["actions"]["duration_s"]) * NS)
        # What the labels and costs depend on besides the bag (the feature cache's key).
        sim = cfg["sim"]
        self._config = json.loads(json.dumps({
            "actions": cfg["actions"], "safety": cfg["safety"],
            "sim": {k: sim[k] for k in ("home_joint_positions", "home_joint_speed_rad_s",
                                        "home_max_tcp_speed_mps", "gripper_open_m")},
        }, default=str))

    def fingerprint(self, bag: str | os.PathLike[str]) -> dict[str, Any]:
        """Everything a bag's labels depend on apart from the bag and the topic map."""
        return {"config": self._config, "settings": dataclasses.asdict(self.settings),
                "annotations_sha256": _file_sha256(annotation_path(bag))}

    # -------------------------------------------------------------------------- bags -> episodes
    def episodes(self, bag: str | os.PathLike[str], topic_map: TopicMap, *, skip_bad: bool,
                 report: ReadReport) -> list[Episode]:
        """Read one bag as a motion log, label its steps and cut them into episodes. What was
        skipped is counted in `report.skipped` ("unlabelled_<reason>") and the labels' counts
        and residuals in `report.labels`."""
        (log,) = read_motion_logs(bag, topic_map, skip_bad=skip_bad, report=report,
                                  max_joint_gap_s=self.settings.max_joint_gap_s)
        windows = self.label_log(log, topic_map)
        path = annotation_path(bag)
        annotated = load_annotations(path, log.start_ns) if path is not None else None
        owner = _episode_of(windows, annotated)
        for w, e in zip(windows, owner, strict=True):
            if e is None and annotated is not None and not w.reason:
                w.reason = OUTSIDE
        kept = [(w, e) for w, e in zip(windows, owner, strict=True) if not w.reason]
        steps = self._steps(log, [w for w, _ in kept])
        if annotated is None:
            episodes = log.segment([s for s in steps if s is not None])
        else:
            episodes = self._annotated(steps, [e for _, e in kept], annotated, log.source)
        for episode in episodes:
            episode.steps[-1].done = True
        merge_label_stats(report.labels, _stats(windows, self.names, annotated))
        for w in windows:
            if w.reason:
                report.skipped[f"unlabelled_{w.reason}"] += 1
        return episodes

    def _steps(self, log: MotionLog, windows: list[WindowLabel]) -> list[Step | None]:
        """One Step per labelled window (None where the frame lacked a required stream)."""
        by_frame = {s.stamp_ns: s for s in log.steps({w.frame for w in windows
                                                       if w.frame is not None})}
        steps: list[Step | None] = []
        used: set[int] = set()
        for w in windows:
            assert w.frame is not None and w.action is not None
            step = by_frame.get(int(log.frame_stamps[w.frame]))
            if step is not None:
                # Commands faster than the camera: two steps may share a frame (not its Step).
                step = dataclasses.replace(step, stamps=dict(step.stamps)) if id(step) in used \
                    else step
                used.add(id(step))
                step.action = step.proposed_action = w.action  # the operator's motion: expert
                step.cost, step.cost_sources = w.cost, dict(w.cost_sources)
                step.stamps.update(motion_start=w.start_ns, motion_end=w.end_ns)
            steps.append(step)
        return steps

    @staticmethod
    def _annotated(steps: list[Step | None], owners: list[int | None],
                   annotated: list[AnnotatedEpisode], source: str) -> list[Episode]:
        groups: dict[int, list[Step]] = {}
        for step, e in zip(steps, owners, strict=True):
            if step is not None and e is not None:
                groups.setdefault(e, []).append(step)
        episodes = []
        for e, group in sorted(groups.items()):
            for index, step in enumerate(group):
                step.episode_id, step.index = e, index
                if annotated[e].instruction is not None:
                    step.instruction = annotated[e].instruction
            group[-1].success = annotated[e].success
            episodes.append(Episode(e, group, source=source))
        return episodes

    # -------------------------------------------------------------------------- one log
    def label_log(self, log: MotionLog, topic_map: TopicMap | None = None) -> list[WindowLabel]:
        """The steps of a log, each labelled or with the reason it was skipped (the topic map
        gives the alignment tolerance and the gap that separates recordings)."""
        tmap = topic_map or TopicMap.load()
        arm, fingers = _joint_names(log)
        setpoints = _Setpoints(log) if log.commands else None
        windows = self._windows(log, arm[0], round(tmap.episode_gap_s * NS))
        tol = round(tmap.tolerance_s * NS)
        max_age = round(self.settings.max_frame_age_s * NS)
        for w in windows:
            frame = int(np.searchsorted(log.frame_stamps, w.start_ns + tol, side="right")) - 1
            if frame < 0 or w.start_ns - int(log.frame_stamps[frame]) > max_age:
                w.reason = NO_FRAME
                continue
            w.frame = frame
            if not log.joints.covers([*arm, *fingers], w.start_ns, w.end_ns):
                w.reason = NO_JOINT_STATES
                continue
            self._label(w, log, arm, fingers, setpoints)
            if not w.reason:
                self._cost(w, log, arm, fingers)
        return windows

    def _windows(self, log: MotionLog, joint: str, gap_ns: int) -> list[WindowLabel]:
        """Steps on a grid of one primitive's duration from the first frame of each recording
        (frames further apart than the topic map's episode gap start a new one), restarted at
        each command that starts an operator's motion (one at least half a step after the
        previous command; faster ones are streamed setpoints). A step ends by the recording's
        last joint state; steps under half a primitive are not steps."""
        frames = log.frame_stamps
        if len(frames) == 0 or joint not in log.joints.stamps:
            return []
        d, half = self.duration_ns, self.duration_ns // 2
        stamps = sorted(c.stamp_ns for c in log.commands)
        anchors = [t for k, t in enumerate(stamps) if k == 0 or t - stamps[k - 1] >= half]
        joint_stamps = log.joints.stamps[joint]
        cuts = np.flatnonzero(np.diff(frames) > gap_ns)
        windows: list[WindowLabel] = []
        k = 0
        for first, last in zip(np.concatenate([[0], cuts + 1]),
                               np.concatenate([cuts, [len(frames) - 1]]), strict=True):
            t, last_ns = int(frames[first]), int(frames[last])
            after = int(frames[last + 1]) if last + 1 < len(frames) else None
            ends = joint_stamps if after is None else joint_stamps[joint_stamps < after]
            data_end = int(ends[-1]) if len(ends) else t
            while t <= last_ns:
                while k < len(anchors) and anchors[k] <= t:
                    k += 1
                end = min(t + d, data_end, anchors[k] if k < len(anchors) else t + d)
                if end - t < half:
                    if end >= data_end:
                        break
                else:
                    windows.append(WindowLabel(t, end))
                t = end
        return windows

    def _label(self, w: WindowLabel, log: MotionLog, arm: list[str], fingers: list[str],
               setpoints: _Setpoints | None) -> None:
        t0, t1 = w.start_ns, w.end_ns
        q0 = log.joints.at(arm, t0)
        qd0 = log.joints.at(arm, t0, velocity=True)
        g0 = float(np.mean(log.joints.at(fingers, t0))) if fingers else 0.0
        dq = setpoints.change(arm, t0, t1) if setpoints else None
        w.commanded = dq is not None
        if dq is None:
            dq = log.joints.at(arm, t1) - q0
        dg = 0.0
        if fingers:
            change = setpoints.change(fingers, t0, t1) if setpoints else None
            dg = float(np.mean(change if change is not None
                               else log.joints.at(fingers, t1) - log.joints.at(fingers, t0)))
        # The planner plans fingers from the opening last commanded: the setpoint where known.
        g_cmd = g0
        if setpoints and fingers:
            known = [setpoints.at(n, t0) for n in fingers]
            if all(v is not None for v in known):
                g_cmd = float(np.mean(known))
        tcp_end = kin.tcp_pose(q0 + dq)[0]
        fits = [self._fit(spec, q0, qd0, g_cmd, dg, tcp_end, t1 - t0, bool(fingers))
                for spec in self.actions]
        residuals = np.array([r for r, _ in fits])
        best = float(residuals.min())
        w.residual = best
        if not best <= self.settings.residual_threshold:
            w.reason = NO_PRIMITIVE
            return
        margin = self.settings.ambiguity_margin
        close = [int(a) for a in np.flatnonzero(residuals <= best + margin)]
        first = int(np.argmin(residuals))
        if any(np.linalg.norm(fits[a][1] - fits[first][1]) > margin for a in close):
            # A different motion fits nearly as well (home from a moving arm continues the
            # motion at first, like a move along it): no guess.
            w.reason = AMBIGUOUS
            return
        # The same predicted motion (close_gripper on a closed gripper, home at home, stop): a
        # no-op is a stop.
        w.action = self.stop if self.stop in close else first

    def _fit(self, spec: Any, q0: np.ndarray, qd0: np.ndarray, g_cmd: float, dg: float,
             tcp_end: np.ndarray, span_ns: int, has_fingers: bool) -> tuple[float, np.ndarray]:
        """How far (in step_m) the primitive's predicted TCP and fingers end from the recorded
        ones, and the prediction itself (TCP in step_m, finger change in gripper units)."""
        if spec.gripper is not None and not has_fingers:
            return float("inf"), np.full(4, np.inf)  # an unrecorded gripper explains nothing
        self.planner.reset()  # each prediction from the recorded TCP, not the goal lattice
        plan = self.planner.plan(spec, q0, g_cmd, qd0)
        s = min(1.0, span_ns / NS / plan.duration_s)
        tcp = kin.tcp_pose(plan.cubic.positions(s))[0]
        arm = float(np.linalg.norm(tcp - tcp_end)) / self.step_m
        unit = self.settings.gripper_unit_m
        travel = plan.finger_target - plan.finger_start
        finger = float(plan.finger_at(s) - plan.finger_start)
        if spec.gripper is not None and abs(travel) > unit / 2:
            # Towards the target by at least one unit: a grasp stops short of it.
            grip = max(0.0, 1.0 - float(np.sign(travel)) * dg / unit)
        else:
            grip = abs(dg - finger) / unit
        return float(np.hypot(arm, grip)), np.array([*(tcp / self.step_m), finger / unit])

    def _cost(self, w: WindowLabel, log: MotionLog, arm: list[str], fingers: list[str]) -> None:
        """The shield's hard-limit checks on the measured motion, stretch by stretch."""
        period = round(self.settings.check_period_s * NS)
        knots = [w.start_ns]
        for t in log.joints.sample_times(arm, w.start_ns, w.end_ns):
            if t - knots[-1] >= period and w.end_ns - t >= period // 2:
                knots.append(int(t))
        knots.append(w.end_ns)
        times = np.asarray(knots, dtype=np.float64)
        q = log.joints.at(arm, times)
        qd = log.joints.at(arm, times, velocity=True)
        g = (np.mean(log.joints.at(fingers, times), axis=1) if fingers
             else np.zeros(len(knots)))
        failed: set[str] = set()
        for a in range(len(knots) - 1):
            motion = RecordedMotion(
                arm_target=q[a + 1], finger_target=float(g[a + 1]),
                duration_s=(knots[a + 1] - knots[a]) / NS, ee_start=kin.tcp_pose(q[a])[0],
                ee_end=kin.tcp_pose(q[a + 1])[0], ik_converged=True, arm_start=q[a],
                arm_start_velocity=qd[a], finger_start=float(g[a]), arm_end_velocity=qd[a + 1])
            codes = self.checker.check(motion).codes
            # A check that could not run (non-finite data) counts as failed: fails closed.
            failed |= {name for name in HARD_LIMITS if codes[name] != Check.OK}
        # The TCP speed: the shield bounds a planned motion's from above (it certifies a
        # prediction), and that bound's slack grows with acceleration: a sharp but slow change
        # of direction would count as too fast. A log measured the speed: the recorded joint
        # states' TCP speeds are compared with the same limit.
        failed.discard("ee_speed")
        samples = np.concatenate([[w.start_ns], log.joints.sample_times(arm, w.start_ns,
                                                                         w.end_ns), [w.end_ns]])
        frames = kin.link_frames_batch(log.joints.at(arm, samples))
        speed = np.linalg.norm(kin.tcp_velocities(
            frames, log.joints.at(arm, samples, velocity=True)), axis=1)
        if not np.all(speed <= self.ee_speed_limit):
            failed.add("ee_speed")
        w.cost_sources = {name: name in failed for name in HARD_LIMITS}
        w.cost = float(bool(failed))


def _joint_names(log: MotionLog) -> tuple[list[str], list[str]]:
    """The arm's 7 joints and the fingers' joints: the Panda's names (robot.kinematics) where the
    log has them, else the order of its joint states (7 arm joints first, as proprioception
    reads them)."""
    names = log.joints.names
    arm = list(kin.ARM_JOINTS) if set(kin.ARM_JOINTS) <= set(names) else list(names[:7])
    fingers = [n for n in kin.FINGER_JOINTS if n in names] or [
        n for n in names[7:9] if n not in arm]
    if len(arm) < 7:
        raise ConfigError(f"{log.source}: motion labelling needs the arm's 7 joint states; the "
                          f"log has {list(names)}")
    return arm, fingers


def _episode_of(windows: list[WindowLabel],
                annotated: list[AnnotatedEpisode] | None) -> list[int | None]:
    """The annotated episode each window starts in (all None without annotations)."""
    if annotated is None:
        return [None] * len(windows)
    out: list[int | None] = []
    for w in windows:
        out.append(next((k for k, e in enumerate(annotated)
                         if e.start_ns <= w.start_ns < e.end_ns), None))
    return out


def _stats(windows: list[WindowLabel], names: list[str],
           annotated: list[AnnotatedEpisode] | None) -> dict[str, Any]:
    labelled = [w for w in windows if not w.reason]
    return {
        "steps": len(windows),
        "labelled": len(labelled),
        "commanded": sum(w.commanded for w in labelled),
        "per_action": dict(Counter(names[w.action] for w in labelled if w.action is not None)),
        "costly": sum(w.cost > 0 for w in labelled),
        "cost_sources": dict(Counter(k for w in labelled for k, v in w.cost_sources.items()
                                     if v)),
        "annotated_bags": int(annotated is not None),
        "unannotated_bags": int(annotated is None),
        # rounded: they end up in JSON (the feature cache, the report)
        "residuals": [round(w.residual, 4) for w in labelled],
        "unexplained_residuals": [round(w.residual, 4) for w in windows
                                  if w.reason == NO_PRIMITIVE],
    }


def merge_label_stats(into: dict[str, Any], part: dict[str, Any]) -> None:
    """Add one bag's label statistics to a total (counts add, lists concatenate)."""
    for key, value in part.items():
        if isinstance(value, dict):
            into[key] = dict(Counter(into.get(key, {})) + Counter(value))
        elif isinstance(value, list):
            into[key] = [*into.get(key, []), *value]
        else:
            into[key] = into.get(key, 0) + value


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    v = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4),
            "p90": round(float(np.quantile(v, 0.9)), 4), "max": round(float(v.max()), 4)}


def label_summary(labels: dict[str, Any], skipped: dict[str, int],
                  threshold: float | None = None) -> dict[str, Any]:
    """What the pre-training report says about motion labels: steps labelled and skipped (by
    reason), the residuals of the labelled steps and of the unexplained ones (step_m units)."""
    if not labels:
        return {}
    reasons = {k.removeprefix("unlabelled_"): v for k, v in skipped.items()
               if k.startswith("unlabelled_")}
    return {
        "steps": labels.get("steps", 0),
        "labelled": labels.get("labelled", 0),
        "skipped": sum(reasons.values()),
        "skipped_by_reason": reasons,
        "residual_threshold": threshold,
        "residual": _quantiles(labels.get("residuals", [])),
        "unexplained_residual": _quantiles(labels.get("unexplained_residuals", [])),
        "commanded": labels.get("commanded", 0),
        "per_action": labels.get("per_action", {}),
        "costly_steps": labels.get("costly", 0),
        "cost_sources": labels.get("cost_sources", {}),
        "annotated_bags": labels.get("annotated_bags", 0),
        "unannotated_bags": labels.get("unannotated_bags", 0),
    }
