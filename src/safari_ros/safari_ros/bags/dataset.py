"""Bags -> episodes of time-aligned steps, for pre-training.

Every image on the topic map's image topic keys one step. The other streams pair with it by
approximate time (nearest stamp within `tolerance_s`, after the stream's offset); action and
feedback messages of the SAFARI stack carry the image's stamp (observation_stamp, Feedback's
header), so they pair exactly. A step that misses a configured stream is left out and counted
(`ReadReport.skipped['unpaired_<stream>']`), as message_filters' approximate-time policy drops
incomplete sets; it is counted once, under the first stream it lacks. Steps are cut into episodes
after a done step, on an episode_id change, at an episode marker, or at a gap in the images.

`read_motion_logs` reads a log that did not run SAFARI (no action or feedback topics) for motion
labelling: every frame, each joint's recorded trajectory and the controller's commands, from which
safari_ros.pretrain.labelling makes the steps.
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np

from .errors import (
    BagError,
    ImageError,
    MissingTopic,
    ReadReport,
    UnknownMessageType,
    UnsupportedEncoding,
)
from .images import COLOUR_ENCODINGS, DEPTH_ENCODINGS, image_to_numpy
from .messages import stamp_to_ns
from .reader import BagMessage, BagReader
from .topics import LABEL_FREE_STREAMS, TopicMap

__all__ = [
    "STREAM_TYPES",
    "Episode",
    "JointCommand",
    "JointSeries",
    "MotionLog",
    "Step",
    "StepDataset",
    "read_episodes",
    "read_motion_logs",
]

_F64 = np.zeros(0, dtype=np.float64)


@dataclass(eq=False)
class Step:
    """One camera frame with everything paired to it. Arrays are numpy; absent streams None."""

    stamp_ns: int  # the image's header stamp: the step's key
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None = None  # (H, W) float32 metres, NaN = no return
    camera_k: np.ndarray | None = None  # (3, 3) intrinsics
    joint_names: tuple[str, ...] = ()
    joint_positions: np.ndarray = field(default_factory=_F64.copy)  # rad
    joint_velocities: np.ndarray = field(default_factory=_F64.copy)  # rad/s (may be empty)
    instruction: str = ""
    action: int | None = None  # executed action index
    proposed_action: int | None = None  # the policy's choice, where the bag tells it
    reward: float | None = None
    cost: float | None = None
    cost_sources: dict[str, bool] = field(default_factory=dict)  # monitored source -> fired
    done: bool = False
    success: bool = False
    episode_id: int = 0
    index: int = 0  # step number within the episode
    stamps: dict[str, int] = field(default_factory=dict)  # stream -> stamp it was paired by

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Step):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value, the form torch's default_collate batches."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Episode:
    """Consecutive steps of one episode, in time order."""

    episode_id: int
    steps: list[Step]
    source: str = field(default="", compare=False)  # the bag it came from

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def instruction(self) -> str:
        """The instruction of the first step."""
        return self.steps[0].instruction if self.steps else ""

    @property
    def success(self) -> bool:
        """True when a step reported success."""
        return any(s.success for s in self.steps)

    @property
    def episode_cost(self) -> float:
        """Undiscounted cost summed over the episode (the safe-RL cost limit's measure)."""
        return float(sum(s.cost or 0.0 for s in self.steps))


class StepDataset(Sequence[Step]):
    """The steps of some episodes as one map-style dataset (torch DataLoader accepts it)."""

    def __init__(self, episodes: Iterable[Episode], *, successful_only: bool = False) -> None:
        self.steps = [s for e in episodes if e.success or not successful_only for s in e.steps]

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> Step:  # type: ignore[override]
        return self.steps[i]


# Message types each stream understands (None: any type; only the bag time is used).
_INT = ("std_msgs/msg/Int32", "std_msgs/msg/UInt32", "std_msgs/msg/Int64", "std_msgs/msg/UInt64")
_FLOAT = ("std_msgs/msg/Float32", "std_msgs/msg/Float64")
_TRANSITION = "safari_msgs/msg/Transition"
STREAM_TYPES: dict[str, frozenset[str] | None] = {
    "image": frozenset({"sensor_msgs/msg/Image"}),
    "depth": frozenset({"sensor_msgs/msg/Image"}),
    "camera_info": frozenset({"sensor_msgs/msg/CameraInfo"}),
    "joint_states": frozenset({"sensor_msgs/msg/JointState"}),
    "instruction": frozenset({"std_msgs/msg/String"}),
    "action": frozenset({*_INT, "safari_msgs/msg/ActionProposal",
                         "safari_msgs/msg/ShieldDecision", _TRANSITION}),
    "feedback": frozenset({"safari_msgs/msg/Feedback", _TRANSITION}),
    "reward": frozenset(_FLOAT),
    "cost": frozenset(_FLOAT),
    "episode": None,
    "command": frozenset({"trajectory_msgs/msg/JointTrajectory"}),
}
# A step without one of these (when configured) is left out; the others may be missing.
_REQUIRED_PER_STEP = ("depth", "joint_states", "action", "feedback", "reward", "cost")
# Streams that are not paired with frames: latched (instruction), markers, or whole trajectories.
_UNPAIRED = ("image", "instruction", "episode", "command")
# Streams of events that belong to one step only (a state, like joint_states, may serve two).
_ONE_STEP_ONLY = frozenset({"action", "feedback", "reward", "cost"})
_UNSET = -1  # episode_id / index not given by any message of the step


class _Event(NamedTuple):
    stamp_ns: int  # the stamp it pairs by
    values: dict[str, Any]  # Step fields it provides (images: the message, decoded later)


def _stamp(msg: Any, bag_ns: int) -> int:
    """The stamp a message pairs by: observation's stamp, else header stamp, else bag time."""
    if hasattr(msg, "observation") and hasattr(msg.observation, "header"):  # Transition
        return stamp_to_ns(msg.observation.header.stamp)
    if hasattr(msg, "observation_stamp"):
        return stamp_to_ns(msg.observation_stamp)
    if hasattr(msg, "header"):
        return stamp_to_ns(msg.header.stamp) or bag_ns  # a zero stamp means "not set"
    return bag_ns


def _ids(msg: Any) -> dict[str, Any]:
    return {k: int(getattr(msg, a)) for k, a in (("episode_id", "episode_id"), ("index", "step"))
            if hasattr(msg, a)}


def _action(msg: Any) -> dict[str, Any]:
    if hasattr(msg, "executed_action_index"):  # ShieldDecision, Transition
        values = {"action": int(msg.executed_action_index),
                  "proposed_action": int(msg.proposed_action_index)}
    elif hasattr(msg, "action_index"):  # ActionProposal: the proposal is what ran
        values = {"action": int(msg.action_index), "proposed_action": int(msg.action_index)}
    else:
        values = {"action": int(msg.data)}
    return {**values, **_ids(msg)}


def _feedback(msg: Any) -> dict[str, Any]:
    return {
        "reward": float(msg.reward),
        "cost": float(msg.cost),
        "cost_sources": dict(zip(msg.cost_sources, map(bool, msg.cost_active), strict=False)),
        "done": bool(msg.done),
        "success": bool(msg.success),
        **_ids(msg),
    }


def _joints(msg: Any) -> dict[str, Any]:
    return {
        "joint_names": tuple(msg.name),
        "joint_positions": np.array(msg.position, dtype=np.float64),
        "joint_velocities": np.array(msg.velocity, dtype=np.float64),
    }


def _command(msg: Any) -> dict[str, Any]:
    names = tuple(msg.joint_names)
    points = list(msg.points)
    return {
        "names": names,
        "times_s": np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
                             for p in points], dtype=np.float64),
        "positions": np.array([np.asarray(p.positions, dtype=np.float64) for p in points]
                              ).reshape(len(points), len(names)),
    }


_EXTRACT: dict[str, Callable[[Any], dict[str, Any]]] = {
    "image": lambda m: {"msg": m},
    "depth": lambda m: {"msg": m},
    "camera_info": lambda m: {"camera_k": np.array(m.k, dtype=np.float64).reshape(3, 3)},
    "joint_states": _joints,
    "instruction": lambda m: {"instruction": str(m.data)},
    "action": _action,
    "feedback": _feedback,
    "reward": lambda m: {"reward": float(m.data)},
    "cost": lambda m: {"cost": float(m.data)},
    "episode": lambda m: {},
    "command": _command,
}


def read_episodes(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    topic_map: TopicMap | None = None,
    *,
    skip_bad: bool = False,
    report: ReadReport | None = None,
) -> list[Episode]:
    """Read one bag or several into episodes of aligned steps.

    Args:
        paths: bag path(s): rosbag2 directory, .mcap, .db3 or ROS 1 .bag.
        topic_map: default `TopicMap.load()` (config/bag_topics.yaml).
        skip_bad: use the valid parts of bad input instead of raising; what was left out is
            counted by cause in `report`.
        report: filled with counts (pass one in to see them).

    Raises:
        BagError subclasses naming bag, topic and time: CorruptBag/TruncatedBag, MissingTopic,
        UnknownMessageType, UnsupportedEncoding/MalformedImage.
    """
    tmap = topic_map or TopicMap.load()
    report = report if report is not None else ReadReport()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    episodes: list[Episode] = []
    for path in paths:
        episodes.extend(_BagEpisodes(path, tmap, skip_bad, report).read())
    report.episodes = len(episodes)
    report.steps = sum(len(e) for e in episodes)
    return episodes


class _BagEpisodes:
    """The reading of one bag: gather events per stream, align them on images, segment."""

    def __init__(self, path: str | os.PathLike[str], tmap: TopicMap, skip_bad: bool,
                 report: ReadReport, *, motion: bool = False) -> None:
        self.bag = BagReader(path, skip_bad=skip_bad, report=report)
        # motion: a log read for motion labelling (commands read; SAFARI's topics not)
        self.tmap = tmap.for_motion_labels() if motion else tmap.with_topics(command=None)
        self.skip_bad = skip_bad
        self.report = report
        self.events: dict[str, list[_Event]] = {}
        self.start_ns = 0

    def read(self) -> list[Episode]:
        self.gather()
        return self._segment(self._align())

    def gather(self) -> None:
        """Read and decode the configured streams' messages into time-sorted events."""
        with self.bag:
            self.start_ns = self.bag.start_ns
            streams = self._streams()
            self.events = {s: [] for s in streams}
            for message in self.bag.messages(set(streams.values())):
                self._gather(message, [s for s, t in streams.items() if t == message.topic])
        for evs in self.events.values():
            evs.sort(key=lambda e: e.stamp_ns)  # header stamps need not follow bag time

    def _fail(self, error: BagError) -> None:
        """Raise, or count and go on (skip_bad)."""
        if not self.skip_bad:
            raise error
        self.report.skip(error)

    def _streams(self) -> dict[str, str]:
        """stream -> topic of the configured streams the bag can supply."""
        present = self.bag.topics
        known = self.bag.reader.typestore.fielddefs
        bag = str(self.bag.path)
        streams = {}
        for stream, topic in self.tmap.read_topics().items():
            error: BagError | None = None
            msgtype = present.get(topic)
            allowed = STREAM_TYPES[stream]
            if msgtype is None:
                if stream in self.tmap.optional:
                    continue
                hint = ("; for a log of a robot that did not run SAFARI, label the actions "
                        "from the recorded motion (safari_pretrain train --label-from-motion)"
                        if stream in LABEL_FREE_STREAMS else "")
                error = MissingTopic(f"topic {topic} ({stream}) is not in the bag, which has "
                                     f"{sorted(present)}{hint}", bag=bag, topic=topic)
            elif msgtype not in known:
                error = UnknownMessageType(f"no definition of {msgtype} in the bag or the type "
                                           "store", bag=bag, topic=topic)
            elif allowed is not None and msgtype not in allowed:
                error = UnknownMessageType(f"{msgtype} cannot serve as {stream}; expected one of "
                                           f"{sorted(allowed)}", bag=bag, topic=topic)
            if error is None:
                streams[stream] = topic
            elif stream == "image":
                raise error  # nothing to key steps on: even skip_bad cannot go on
            else:
                self._fail(error)
        return streams

    def _gather(self, message: BagMessage, streams: list[str]) -> None:
        try:
            msg = self.bag.decode(message)
            for stream in streams:
                if stream in ("image", "depth"):
                    self._check_encoding(stream, msg)
        except BagError as err:
            self._fail(err.locate(topic=message.topic, stamp_ns=message.timestamp_ns))
            return
        stamp = _stamp(msg, message.timestamp_ns)
        for stream in streams:
            self.events[stream].append(_Event(stamp, _EXTRACT[stream](msg)))

    def _check_encoding(self, stream: str, msg: Any) -> None:
        # A depth image on the colour topic (or the reverse) is a wrong topic map: say so early.
        wanted = COLOUR_ENCODINGS if stream == "image" else DEPTH_ENCODINGS
        if msg.encoding not in wanted:
            raise UnsupportedEncoding(f"{stream} image has encoding {msg.encoding!r}; expected "
                                      f"one of {', '.join(wanted)}", bag=str(self.bag.path))

    def _align(self, only: Iterable[int] | None = None) -> list[Step]:
        """Steps of the images (those at indices `only`, all when None) with their streams."""
        tol = int(self.tmap.tolerance_s * 1e9)
        images = self.events.get("image", [])
        paired: dict[str, list[int | None]] = {
            s: self._pair([e.stamp_ns for e in images], s, tol)
            for s in self.events if s not in _UNPAIRED
        }
        instructions = self.events.get("instruction", [])
        instruction_stamps = [e.stamp_ns for e in instructions]
        steps = []
        for i in range(len(images)) if only is None else sorted(set(only)):
            image = images[i]
            missing = [s for s in _REQUIRED_PER_STEP if s in paired and paired[s][i] is None]
            if missing:
                # Counted once, under the first part it lacks: the counts add up to the frames
                # left out (a frame without a decision also lacks its feedback).
                self.report.skipped[f"unpaired_{missing[0]}"] += 1
                continue
            values: dict[str, Any] = {"stamp_ns": image.stamp_ns, "stamps": {},
                                      "episode_id": _UNSET, "index": _UNSET}
            # Latched: the latest instruction up to this frame (within the tolerance).
            j = bisect_right(instruction_stamps, image.stamp_ns + tol) - 1
            if j >= 0:
                values["instruction"] = instructions[j].values["instruction"]
            # reward/cost after feedback: their own topics override feedback's values.
            for stream in ("camera_info", "joint_states", "action", "feedback", "reward", "cost"):
                k = paired[stream][i] if stream in paired else None
                if k is not None:
                    event = self.events[stream][k]
                    values.update(event.values)
                    values["stamps"][stream] = event.stamp_ns
            step = self._step(image, paired.get("depth"), i, values)
            if step is not None:
                steps.append(step)
        return steps

    def _pair(self, keys: list[int], stream: str, tol: int) -> list[int | None]:
        """For each image stamp, the index of the stream's nearest event within tol, or None."""
        offset = int(self.tmap.offsets_s.get(stream, 0.0) * 1e9)
        stamps = [e.stamp_ns - offset for e in self.events[stream]]
        best: list[int | None] = []
        for key in keys:
            i = bisect_left(stamps, key)
            near = [j for j in (i - 1, i) if 0 <= j < len(stamps) and abs(stamps[j] - key) <= tol]
            best.append(min(near, key=lambda j: abs(stamps[j] - key)) if near else None)
        if stream in _ONE_STEP_ONLY:
            # An event two images claim stays with the nearer one; the other image goes without.
            owner: dict[int, int] = {}
            for i, j in enumerate(best):
                if j is not None and (j not in owner or
                                      abs(stamps[j] - keys[i]) < abs(stamps[j] - keys[owner[j]])):
                    owner[j] = i
            best = [j if j is not None and owner[j] == i else None for i, j in enumerate(best)]
        return best

    def _step(self, image: _Event, depth_idx: list[int | None] | None, i: int,
              values: dict[str, Any]) -> Step | None:
        """Decode the step's images; a bad image drops the step (skip_bad) or raises."""
        topics = self.tmap.topics
        try:
            stream = "image"
            rgb = image_to_numpy(image.values["msg"])
            values["stamps"]["image"] = image.stamp_ns
            if depth_idx is not None and depth_idx[i] is not None:
                stream = "depth"
                event = self.events["depth"][depth_idx[i]]
                values["depth"] = image_to_numpy(event.values["msg"])
                values["stamps"]["depth"] = event.stamp_ns
        except ImageError as err:
            self._fail(err.locate(bag=str(self.bag.path), topic=topics[stream],
                                  stamp_ns=image.stamp_ns))
            return None
        return Step(rgb=rgb, **values)

    def _segment(self, steps: list[Step]) -> list[Episode]:
        gap = int(self.tmap.episode_gap_s * 1e9)
        markers = [e.stamp_ns for e in self.events.get("episode", [])]
        groups: list[list[Step]] = []
        for step in steps:
            prev = groups[-1][-1] if groups else None
            if (prev is None or prev.done or step.stamp_ns - prev.stamp_ns > gap
                    or step.episode_id != prev.episode_id
                    or bisect_right(markers, step.stamp_ns) > bisect_right(markers, prev.stamp_ns)):
                groups.append([])
            groups[-1].append(step)
        for n, group in enumerate(groups):
            for position, step in enumerate(group):
                # Bags without episode_id/step fields: number episodes and steps in order.
                step.episode_id = n if step.episode_id == _UNSET else step.episode_id
                step.index = position if step.index == _UNSET else step.index
        return [Episode(g[0].episode_id, g, source=str(self.bag.path)) for g in groups]


# ------------------------------------------------------------------------------ motion logs
@dataclass
class JointSeries:
    """Each joint's recorded trajectory: stamps (ns), positions and velocities, per joint name
    (an arm and its gripper often publish their joint states separately)."""

    stamps: dict[str, np.ndarray] = field(default_factory=dict)  # (T,) int64, increasing
    positions: dict[str, np.ndarray] = field(default_factory=dict)  # (T,)
    velocities: dict[str, np.ndarray] = field(default_factory=dict)  # (T,); recorded, or
    # central differences of the positions where a joint state carries none
    max_gap_ns: int = 100_000_000  # samples further apart leave the time between uncovered

    @classmethod
    def from_events(cls, events: Sequence[_Event], max_gap_s: float) -> JointSeries:
        """The series of sensor_msgs/JointState events (as _joints extracts them)."""
        rows: dict[str, list[tuple[int, float, float]]] = {}
        for e in events:
            v = e.values
            vel = v["joint_velocities"]
            for k, name in enumerate(v["joint_names"]):
                if k < len(v["joint_positions"]):
                    rows.setdefault(name, []).append(
                        (e.stamp_ns, v["joint_positions"][k], vel[k] if k < len(vel) else np.nan))
        series = cls(max_gap_ns=int(max_gap_s * 1e9))
        for name, samples in rows.items():
            samples.sort()
            t = np.array([r[0] for r in samples], dtype=np.int64)
            keep = np.concatenate([[True], np.diff(t) > 0])  # one sample per stamp
            t = t[keep]
            q = np.array([r[1] for r in samples])[keep]
            qd = np.array([r[2] for r in samples])[keep]
            if np.isnan(qd).any():
                qd = np.gradient(q, t * 1e-9) if len(t) > 1 else np.zeros_like(q)
            series.stamps[name], series.positions[name], series.velocities[name] = t, q, qd
        return series

    @property
    def names(self) -> tuple[str, ...]:
        """The joints that have a series."""
        return tuple(self.stamps)

    def covers(self, names: Sequence[str], t0_ns: int, t1_ns: int) -> bool:
        """Whether every joint of `names` has samples around all of [t0, t1] with no gap over
        max_gap_ns."""
        for name in names:
            t = self.stamps.get(name)
            if t is None or len(t) == 0 or t0_ns < t[0] or t1_ns > t[-1]:
                return False
            lo = max(int(np.searchsorted(t, t0_ns, side="right")) - 1, 0)
            hi = int(np.searchsorted(t, t1_ns, side="left"))
            if np.any(np.diff(t[lo:hi + 1]) > self.max_gap_ns):
                return False
        return True

    def at(self, names: Sequence[str], t_ns: float | np.ndarray,
           velocity: bool = False) -> np.ndarray:
        """Positions (or velocities) of `names` at times t (linear between samples): (len(names),)
        for a scalar t, (len(t), len(names)) for an array. Check `covers` first."""
        table = self.velocities if velocity else self.positions
        t = np.asarray(t_ns, dtype=np.float64)
        out = np.stack([np.interp(t, self.stamps[n], table[n]) for n in names], axis=-1)
        return out

    def sample_times(self, names: Sequence[str], t0_ns: int, t1_ns: int) -> np.ndarray:
        """The recorded stamps of the first joint of `names` strictly inside (t0, t1)."""
        t = self.stamps[names[0]]
        return t[(t > t0_ns) & (t < t1_ns)]


@dataclass(frozen=True)
class JointCommand:
    """One trajectory_msgs/JointTrajectory sent to a controller: its stamp (header, else bag
    time), the joints it names and its points (time from start, positions)."""

    stamp_ns: int
    names: tuple[str, ...]
    times_s: np.ndarray  # (P,)
    positions: np.ndarray  # (P, len(names))


@dataclass
class MotionLog:
    """A log read for motion labelling: its frames (decoded only when asked for), each joint's
    trajectory and the commands the controllers got. `steps(indices)` makes the Steps of chosen
    frames (images decoded, depth and joint state paired, instruction latched) and `segment`
    cuts steps into episodes as read_episodes does (gaps, markers)."""

    source: str
    start_ns: int  # bag time of the bag's first message (annotation times count from it)
    frame_stamps: np.ndarray  # (F,) int64 stamps of every frame, increasing
    joints: JointSeries
    commands: list[JointCommand]
    _reading: _BagEpisodes = field(repr=False)

    def steps(self, indices: Iterable[int]) -> list[Step]:
        """Steps of the frames at `indices` (frames lacking a required stream are left out and
        counted in the read's report, as in read_episodes)."""
        return self._reading._align(indices)

    def segment(self, steps: list[Step]) -> list[Episode]:
        """Episodes of steps, cut after a done step, at episode markers and at frame gaps."""
        return self._reading._segment(steps)


def read_motion_logs(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    topic_map: TopicMap | None = None,
    *,
    skip_bad: bool = False,
    report: ReadReport | None = None,
    max_joint_gap_s: float = 0.1,
) -> list[MotionLog]:
    """Read bags of a robot that did not run SAFARI: frames (image, depth, camera info),
    joint states, instruction, episode markers and the controllers' JointTrajectory commands
    (stream `command`, optional). The topic map's action, feedback, reward and cost streams are
    not read. Bad input raises or is counted as in read_episodes."""
    tmap = topic_map or TopicMap.load()
    report = report if report is not None else ReadReport()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    logs = []
    for path in paths:
        reading = _BagEpisodes(path, tmap, skip_bad, report, motion=True)
        reading.gather()
        events = reading.events
        commands = [JointCommand(e.stamp_ns, e.values["names"], e.values["times_s"],
                                 e.values["positions"]) for e in events.get("command", [])]
        logs.append(MotionLog(
            source=str(reading.bag.path), start_ns=reading.start_ns,
            frame_stamps=np.array([e.stamp_ns for e in events.get("image", [])], dtype=np.int64),
            joints=JointSeries.from_events(events.get("joint_states", []), max_joint_gap_s),
            commands=commands, _reading=reading))
    return logs
