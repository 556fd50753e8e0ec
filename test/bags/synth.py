"""Synthetic episodes and bags for the bag tests: small images whose pixels encode the frame."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from safari_ros.bags import Episode, Step, TopicMap

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000  # a realistic epoch stamp
JOINTS = ("joint1", "joint2", "joint3")
INSTRUCTION = "push the red cube onto the blue square"


def frame_rgb(i: int, size: tuple[int, int] = (12, 16)) -> np.ndarray:
    """An RGB frame that differs from every other frame index."""
    h, w = size
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def frame_depth_m(i: int, size: tuple[int, int] = (12, 16)) -> np.ndarray:
    """Depth in whole millimetres (exact in 16UC1 and float32), unique per frame."""
    h, w = size
    return (np.arange(h * w, dtype=np.float32).reshape(h, w) + 1 + 1000 * i) / 1000.0


def make_episodes(n_episodes: int = 2, n_steps: int = 4, size: tuple[int, int] = (12, 16),
                  period_ms: int = 100) -> list[Episode]:
    """Episodes as read_episodes returns them from a SAFARI-stack bag (all fields set)."""
    episodes = []
    for e in range(n_episodes):
        steps = []
        for i in range(n_steps):
            k = e * 1000 + i
            t = T0 + (e * (n_steps + 50) + i) * period_ms * MS
            last = i == n_steps - 1
            steps.append(Step(
                stamp_ns=t, rgb=frame_rgb(k, size), depth=frame_depth_m(k, size),
                camera_k=np.array([[100.0, 0, 8], [0, 100.0, 6], [0, 0, 1]]),
                joint_names=JOINTS, joint_positions=np.array([0.1, 0.2, 0.3]) * k,
                joint_velocities=np.array([0.5, -0.5, 0.0]) + i,
                instruction=f"{INSTRUCTION} {e}", action=i % 8, proposed_action=(i + e) % 8,
                reward=float(i) / 4, cost=float(i % 2),
                cost_sources={"keep_out": bool(i % 2), "table_contact": False},
                done=last, success=last and e % 2 == 0, episode_id=10 + e, index=i,
                stamps={s: t + d * MS for s, d in (("image", 0), ("depth", 1), ("camera_info", 0),
                                                   ("joint_states", -2), ("action", 0),
                                                   ("feedback", 0))},
            ))
        episodes.append(Episode(10 + e, steps))
    return episodes


def standard_map(**overrides: Any) -> TopicMap:
    """The topic map of a `ros2 bag record` bag with standard types only."""
    topics = {"image": "/cam/rgb", "depth": "/cam/depth", "camera_info": None,
              "joint_states": "/joint_states", "instruction": "/instruction",
              "action": "/action", "feedback": None, "reward": "/reward", "cost": "/cost",
              "episode": "/episode_start"}
    settings: dict[str, Any] = {"optional": frozenset({"episode"}), "tolerance_s": 0.01}
    return TopicMap(topics=topics, **{**settings, **overrides})


def write_standard_bag(
    path: Path, n: int = 10, *, jitter_ms: Callable[[str, int], float] | None = None,
    ros1: bool = False, markers: tuple[int, ...] = (), period_ms: int = 100,
) -> None:
    """A bag as `ros2 bag record` (or ROS 1 `rosbag record`) writes it: standard types, header
    stamps on sensor messages, bag time = receive time; frame i at T0 + i*period."""
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_KILTED)
    jitter = jitter_ms or (lambda stream, i: (-1) ** i * 3.0 * ((i * 7) % 3) / 2)
    if ros1:
        from rosbags.rosbag1 import Writer as Writer1

        writer: Any = Writer1(path)
        serialize = store.serialize_ros1
    else:
        writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        serialize = store.serialize_cdr
    types = store.types
    conns: dict[str, Any] = {}

    def put(topic: str, msg: Any, t: int) -> None:
        if topic not in conns:
            conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=store)
        writer.write(conns[topic], t, serialize(msg, msg.__msgtype__))

    def header(t: int) -> Any:
        stamp = types["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
        if ros1:
            return types["std_msgs/msg/Header"](seq=0, stamp=stamp, frame_id="cam")
        return types["std_msgs/msg/Header"](stamp=stamp, frame_id="cam")

    with writer:
        put("/instruction", types["std_msgs/msg/String"](data=INSTRUCTION), T0 - 50 * MS)
        for i in range(n):
            t = T0 + i * period_ms * MS
            if i in markers:
                put("/episode_start", types["std_msgs/msg/Empty"](), t - 10 * MS)
            rgb = frame_rgb(i)
            h, w = rgb.shape[:2]
            put("/cam/rgb", types["sensor_msgs/msg/Image"](
                header=header(t), height=h, width=w, encoding="rgb8", is_bigendian=0,
                step=w * 3, data=rgb.reshape(-1)), t + 2 * MS)
            td = t + int(jitter("depth", i) * MS)
            mm = np.rint(frame_depth_m(i) * 1000).astype("<u2")
            put("/cam/depth", types["sensor_msgs/msg/Image"](
                header=header(td), height=h, width=w, encoding="16UC1", is_bigendian=0,
                step=w * 2, data=mm.reshape(-1).view(np.uint8)), td + 2 * MS)
            tj = t + int(jitter("joint_states", i) * MS)
            put("/joint_states", types["sensor_msgs/msg/JointState"](
                header=header(tj), name=list(JOINTS), position=np.full(3, float(i)),
                velocity=np.zeros(3), effort=np.zeros(0)), tj)
            # std_msgs scalars have no header: they pair by bag (receive) time.
            put("/action", types["std_msgs/msg/Int32"](data=i % 8),
                t + int(jitter("action", i) * MS))
            put("/reward", types["std_msgs/msg/Float32"](data=float(i)),
                t + int(jitter("reward", i) * MS))
            put("/cost", types["std_msgs/msg/Float32"](data=float(i % 2)),
                t + int(jitter("cost", i) * MS))
