"""Write rosbag2 bags (MCAP by default) under the live stack's topic names, without ROS.

`BagRecorder` takes rosbags message objects (see `messages` for builders) and adds a topic's
connection the first time it is written to. `write_episodes` writes steps (the records
`read_episodes` returns) so that reading the bag back gives the same episodes.
`SplitBagRecorder` writes a stream as a series of bags, each closed after a set time, with a
journal beside the open one, so that a process killed while recording loses nothing it wrote
(`recover_split_bags` finishes the killed bag from its journal).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mcap.exceptions import McapError
from mcap.records import Channel, Message
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
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

__all__ = ["BagRecorder", "SplitBagRecorder", "recover_split_bags", "write_episodes"]

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


JOURNAL_SUFFIX = ".journal.mcap"


class _Journal:
    """Append-only copy of what goes into an open bag: unchunked MCAP, flushed after every
    message, so that a process killed with -9 leaves every message it wrote on disk (the OS has
    it; surviving a power cut would take an fsync per message as well). Deleted once its bag is
    closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("xb")
        self._writer = McapWriter(self._file, use_chunking=False,
                                  compression=CompressionType.NONE, use_statistics=False)
        self._writer.start(profile="ros2", library="safari_ros journal")
        self._channels: dict[str, int] = {}

    def write(self, topic: str, msgtype: str, data: bytes, timestamp_ns: int) -> None:
        channel = self._channels.get(topic)
        if channel is None:
            channel = self._writer.register_channel(topic, "cdr", 0, {"msgtype": msgtype})
            self._channels[topic] = channel
        self._writer.add_message(channel, timestamp_ns, data, timestamp_ns)
        self._file.flush()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def abandon(self) -> None:
        """Close without deleting: what it holds finishes its bag later."""
        try:
            self._file.close()
        except OSError:
            pass  # the buffered tail cannot be written: the whole records before it are


def _journal_messages(path: Path) -> list[tuple[str, str, bytes, int]]:
    """(topic, msgtype, cdr, time) of every whole message in a journal; a record cut short by
    the kill ends the list."""
    channels: dict[int, Channel] = {}
    out: list[tuple[str, str, bytes, int]] = []
    with path.open("rb") as f:
        try:
            for record in StreamReader(f).records:
                if isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message) and record.channel_id in channels:
                    ch = channels[record.channel_id]
                    out.append((ch.topic, ch.metadata["msgtype"], record.data, record.log_time))
        except (McapError, EOFError, ValueError, KeyError, struct.error):
            pass  # the tail the process was writing when it died
    return out


def recover_split_bags(folder: str | os.PathLike[str]) -> int:
    """Finish the bags of a killed `SplitBagRecorder` in `folder` from their journals: a bag that
    was never closed is rewritten, under its own name, from every whole message its journal
    holds. Returns how many messages were recovered (0: nothing to do). OSError (no room to
    write the bag): that journal is kept, to be finished by a later call."""
    recovered = 0
    for journal in sorted(Path(folder).glob(f"*{JOURNAL_SUFFIX}")):
        bag = journal.with_name(journal.name[: -len(JOURNAL_SUFFIX)])
        if not (bag / "metadata.yaml").exists():  # closed bags have it: then only the unlink
            messages = _journal_messages(journal)
            try:
                _remove_bag(bag)
                if messages:
                    with BagRecorder(bag) as recorder:
                        for topic, msgtype, data, stamp in messages:
                            recorder.write_cdr(topic, msgtype, data, stamp)
            except OSError:  # still no room: the journal stays for the next try
                _remove_bag(bag)
                raise
            recovered += len(messages)
        journal.unlink()
    return recovered


def _remove_bag(bag: Path) -> None:
    if bag.exists():
        for part in bag.iterdir():
            part.unlink()
        bag.rmdir()


class SplitBagRecorder:
    """A stream recorded as bags `<folder>/<start>-<n>`, each closed after `split_s` seconds.

    An MCAP file is readable only up to its last finished chunk, and the writer keeps the chunk
    in memory until the file is closed: a bag whose recorder is killed with -9 is unreadable.
    So every message also goes to a journal beside the open bag (`<bag>.journal.mcap`, flushed
    per message, deleted when the bag closes), and `recover_split_bags` rebuilds a killed bag
    from it: nothing written is lost. Splitting (like `ros2 bag record --max-bag-duration`)
    keeps each bag and journal small. Reading the folder's bags in name order gives the
    messages in the order written.

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
        self._journal: _Journal | None = None
        self._opened = 0.0

    def _open_next(self) -> BagRecorder:
        path = self.folder / f"{self.start}-{self.bags:05d}"
        self._bag = BagRecorder(path).open()
        self._journal = _Journal(path.with_name(path.name + JOURNAL_SUFFIX))
        self.bags += 1
        self._opened = self.clock()
        return self._bag

    def write_cdr(self, topic: str, msgtype: str, data: bytes, timestamp_ns: int) -> None:
        """Write a serialised message into the journal and the open bag, first closing the bag
        if its time is up. OSError (a full disk): the message is not written, the bag is left
        for `recover_split_bags` to finish from its journal, and the next write starts anew."""
        try:
            if (self._bag is not None and self.split_s > 0
                    and self.clock() - self._opened >= self.split_s):
                self.close()
            if self._bag is None:
                self._open_next()
            assert self._bag is not None and self._journal is not None
            self._journal.write(topic, msgtype, data, timestamp_ns)  # durable first
            self._bag.write_cdr(topic, msgtype, data, timestamp_ns)
        except OSError:
            self._abandon()
            raise
        self.count += 1

    def _abandon(self) -> None:
        """Drop the open bag and journal without finishing them (their files stay)."""
        if self._journal is not None:
            self._journal.abandon()
        self._bag = self._journal = None

    def close(self) -> None:
        """Finish the open bag and drop its journal (idempotent). OSError: the bag is left for
        `recover_split_bags` to finish from its journal."""
        if self._bag is not None:
            try:
                self._bag.close()
            except OSError:
                self._abandon()
                raise
            self._bag = None
        if self._journal is not None:
            self._journal.discard()
            self._journal = None


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
