"""Write rosbag2 bags (MCAP by default) under the live stack's topic names, without ROS.

`BagRecorder` takes rosbags message objects (see `messages` for builders) and adds a topic's
connection the first time it is written to. `write_episodes` writes steps (the records
`read_episodes` returns) so that reading the bag back gives the same episodes.
`SplitBagRecorder` writes a stream as a series of bags, each closed after a set time, so that a
process killed while recording loses only its open bag.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from .dataset import Episode, Step
from .messages import (
    make_camera_info,
    make_feedback,
    make_image,
    make_joint_state,
    make_scalar,
    make_shield_decision,
)
from .topics import TopicMap
from .typestore import safari_typestore

__all__ = ["BagRecorder", "SplitBagRecorder", "write_episodes"]

_STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagRecorder:
    """A new rosbag2 bag being written; use as a context manager.

    Messages may come in any topic order and at any time; connections are added on first use.
    The bag is finished (index, metadata.yaml) on close, also when the `with` block raises, so
    everything written so far stays readable; an existing path is never overwritten.

    Args:
        path: the bag directory to create.
        topic_map: names of the streams (`topic(stream)`); default config/bag_topics.yaml.
        storage: "mcap" or "sqlite3".
        typestore: definitions of the message types written; default `safari_typestore()`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        topic_map: TopicMap | None = None,
        storage: str = "mcap",
        typestore: Typestore | None = None,
    ) -> None:
        if storage not in _STORAGES:
            raise ValueError(f"storage must be one of {sorted(_STORAGES)}, got {storage!r}")
        self.path = Path(path)
        self.topic_map = topic_map or TopicMap.load()
        self.store = typestore or safari_typestore()
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST,
                              storage_plugin=_STORAGES[storage])
        self._connections: dict[str, Connection] = {}
        self._open = False
        self.count = 0

    def open(self) -> Self:
        """Create the bag directory (raises if it exists)."""
        self._writer.open()
        self._open = True
        return self

    def close(self) -> None:
        """Finish the bag: write the storage index and metadata.yaml (idempotent)."""
        if self._open:
            self._open = False
            self._writer.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Close (not abort) on an exception too: what was recorded is worth keeping.
        self.close()

    def topic(self, stream: str) -> str:
        """The topic name of a stream in this recorder's topic map."""
        name = self.topic_map.topic(stream)
        if not name:
            raise KeyError(f"the topic map has no topic for stream {stream!r}")
        return name

    def write(self, topic: str, message: Any, timestamp_ns: int) -> None:
        """Write a rosbags message object on a topic at a bag time (ns)."""
        msgtype = message.__msgtype__
        self.write_cdr(topic, msgtype, self.store.serialize_cdr(message, msgtype), timestamp_ns)

    def write_cdr(self, topic: str, msgtype: str, data: bytes, timestamp_ns: int) -> None:
        """Write an already serialised (CDR) message, e.g. from rclpy's serialize_message."""
        if not self._open:
            raise RuntimeError(f"bag {self.path} is not open for writing")
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.store)
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise TypeError(f"topic {topic} holds {conn.msgtype}, cannot write {msgtype}")
        self._writer.write(conn, int(timestamp_ns), data)
        self.count += 1

    def write_stamped(self, stream: str, message: Any) -> None:
        """Write a message with a header on a stream's topic, at its header stamp as bag time."""
        stamp = message.header.stamp
        self.write(self.topic(stream), message, stamp.sec * 1_000_000_000 + stamp.nanosec)

    def write_step(self, step: Step, *, instruction_changed: bool = True) -> None:
        """Write one step: image (rgb8), depth (32FC1), camera info, joint states, instruction
        (when `instruction_changed`), ShieldDecision for the action and Feedback, each under the
        stamp the step paired it by."""
        t = step.stamp_ns
        s = self.store

        def stamp(stream: str) -> int:
            return step.stamps.get(stream, t)

        if instruction_changed:
            self.write(self.topic("instruction"),
                       make_scalar("std_msgs/msg/String", step.instruction, s), t)
        self.write_stamped("image", make_image(step.rgb, t, store=s))
        if step.depth is not None:
            self.write_stamped("depth", make_image(step.depth, stamp("depth"), store=s))
        if step.camera_k is not None:
            height, width = step.rgb.shape[:2]
            self.write_stamped("camera_info", make_camera_info(
                step.camera_k, width, height, stamp("camera_info"), store=s))
        if step.joint_names or step.joint_positions.size:
            self.write_stamped("joint_states", make_joint_state(
                step.joint_names, step.joint_positions, stamp("joint_states"),
                step.joint_velocities, store=s))
        if step.action is not None:
            proposed = step.action if step.proposed_action is None else step.proposed_action
            self.write_stamped("action", make_shield_decision(
                stamp("action"), stamp("action"), proposed_action=proposed,
                executed_action=step.action, store=s))
        if step.reward is not None or step.cost is not None:
            self.write_stamped("feedback", make_feedback(
                stamp("feedback"), episode_id=step.episode_id, step=step.index,
                reward=step.reward or 0.0, cost=step.cost or 0.0,
                cost_sources=step.cost_sources, done=step.done, success=step.success, store=s))

    def write_episode(self, episode: Episode) -> None:
        """Write an episode's steps (the instruction whenever it changes)."""
        previous = None
        for step in episode.steps:
            self.write_step(step, instruction_changed=step.instruction != previous)
            previous = step.instruction


class SplitBagRecorder:
    """A stream recorded as bags `<folder>/<start>-<n>`, each closed after `split_s` seconds.

    An MCAP file is readable only up to its last finished chunk, and the writer keeps the chunk
    in memory until the file is closed: a recorder killed with -9 loses its open bag whole. Like
    `ros2 bag record --max-bag-duration`, splitting bounds that loss to one split's messages.
    Reading the folder's bags in name order gives the messages in the order written.

    Args:
        folder: where the bags go (created).
        split_s: seconds a bag stays open; 0 = one bag until close().
        clock: monotonic time source (seconds); injectable for tests.
    """

    def __init__(self, folder: str | os.PathLike[str], split_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if split_s < 0:
            raise ValueError(f"split_s must be >= 0, got {split_s}")
        self.folder, self.split_s, self.clock = Path(folder), float(split_s), clock
        self.start = time.strftime("%Y%m%d-%H%M%S")
        self.bags = 0
        self.count = 0
        self._bag: BagRecorder | None = None
        self._opened = 0.0

    def _open_next(self) -> BagRecorder:
        self._bag = BagRecorder(self.folder / f"{self.start}-{self.bags:05d}").open()
        self.bags += 1
        self._opened = self.clock()
        return self._bag

    def write_cdr(self, topic: str, msgtype: str, data: bytes, timestamp_ns: int) -> None:
        """Write a serialised message into the open bag, first closing it if its time is up."""
        bag = self._bag
        if bag is not None and self.split_s > 0 and self.clock() - self._opened >= self.split_s:
            bag.close()
            bag = None
        (bag or self._open_next()).write_cdr(topic, msgtype, data, timestamp_ns)
        self.count += 1

    def close(self) -> None:
        """Finish the open bag (idempotent)."""
        if self._bag is not None:
            self._bag.close()
            self._bag = None


def write_episodes(
    path: str | os.PathLike[str],
    episodes: Iterable[Episode],
    *,
    topic_map: TopicMap | None = None,
    storage: str = "mcap",
) -> Path:
    """Write episodes to a new bag that `read_episodes` reads back equal; returns its path."""
    with BagRecorder(path, topic_map=topic_map, storage=storage) as recorder:
        for episode in episodes:
            recorder.write_episode(episode)
    return recorder.path
