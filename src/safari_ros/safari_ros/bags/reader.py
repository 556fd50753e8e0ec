"""Open any bag rosbags can read (rosbag2 directory with MCAP or sqlite3 storage, bare .mcap or
.db3 file, ROS 1 .bag) and iterate its messages in time order.

`BagReader` wraps `rosbags.highlevel.AnyReader`, turns the library's errors into `BagError`s that
name the bag, and with `skip_bad=True` salvages the complete part of an MCAP file whose end is
missing (a crashed recorder, a partial copy), counting what was lost in a `ReadReport`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from rosbags.convert.converter import generate_message_converter, is_same_wireformat
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader as Reader2
from rosbags.rosbag2 import ReaderError
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import ChunkInfo, McapReader
from rosbags.serde import SerdeError
from rosbags.typesys.store import Typestore

from .errors import (
    BagError,
    CorruptBag,
    LostMessages,
    MissingMetadata,
    ReadReport,
    TruncatedBag,
    UnknownMessageType,
)
from .typestore import safari_typestore

__all__ = ["BagMessage", "BagReader"]

log = logging.getLogger(__name__)
# Errors rosbags (and the storages under it) raise on a damaged file.
_READ_ERRORS = (AnyReaderError, ReaderError, SerdeError, sqlite3.DatabaseError, struct.error,
                EOFError, ValueError, KeyError, AssertionError)
_MCAP_CHUNK = 0x06  # MCAP record opcode of a chunk


@dataclass(frozen=True, slots=True)
class BagMessage:
    """One stored message: its topic, rosidl type name, bag (receive) time and stored bytes."""

    topic: str
    msgtype: str  # 'sensor_msgs/msg/Image'
    timestamp_ns: int
    raw: bytes | memoryview  # CDR for ROS 2 bags, ROS 1 serialization for ROS 1 bags
    connection: Connection


class BagReader:
    """A bag opened for reading; use as a context manager.

    Args:
        path: rosbag2 directory, .mcap / .db3 file, or ROS 1 .bag file.
        skip_bad: salvage what is readable instead of raising (see `report`).
        report: where skipped input is counted (a new one when None).
        typestore: target types of `to_cdr` and the definitions for bags that carry none
            (ROS 2 before Iron); default `safari_typestore()`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        skip_bad: bool = False,
        report: ReadReport | None = None,
        typestore: Typestore | None = None,
    ) -> None:
        self.path = Path(path)
        self.skip_bad = skip_bad
        self.report = report if report is not None else ReadReport()
        self.store = typestore or safari_typestore()
        self._reader: AnyReader | None = None
        self._nothing = False  # skip_bad found no complete record: the bag reads as empty
        self._expected: dict[str, int] = {}  # topic -> count the metadata promised (salvage)
        self._converters: dict[tuple[str, str], Callable[[Any], Any]] = {}

    # -- opening -----------------------------------------------------------------------------
    def open(self) -> Self:
        """Open the bag; raises CorruptBag (or FileNotFoundError) naming it."""
        if not self.path.exists():
            raise FileNotFoundError(f"bag not found: {self.path}")
        self.report.bags.append(str(self.path))
        if self.path.is_dir() and not (self.path / "metadata.yaml").exists():
            self._check_missing_metadata()
        try:
            self._reader = self._open_any(salvage=False)
        except (*_READ_ERRORS, FileNotFoundError) as err:
            error = self._error(CorruptBag, f"cannot open bag: {err}")
            if not self.skip_bad or not self._mcap_files():
                raise error from err
            try:
                self._reader = self._open_any(salvage=True)
            except _READ_ERRORS as again:
                # a recorder killed before its first chunk reached the disk left nothing whole
                self._nothing = True
                self.report.skip(self._error(TruncatedBag, f"no complete record: {again}"))
                return self
            self.report.skip(self._error(TruncatedBag, f"salvaged the complete records: {err}"))
        return self

    def _check_missing_metadata(self) -> None:
        """A rosbag2 directory without metadata.yaml: named as such (raised), or with skip_bad
        counted once, after which its .mcap files are read as bare files."""
        files = self._mcap_files()
        error = self._error(
            MissingMetadata,
            f"{self.path / 'metadata.yaml'} is missing (a recorder that died before closing the "
            "bag, or a partial copy); "
            + (f"skip_bad (--skip-bad) reads its {len(files)} .mcap file(s) without it" if files
               else "it holds no .mcap file to read without it"))
        if not self.skip_bad or not files:
            raise error
        self.report.skip(error)

    def _mcap_files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(self.path.glob("*.mcap"))
        return [self.path] if self.path.suffix == ".mcap" else []

    def _open_any(self, *, salvage: bool) -> AnyReader:
        paths = [self.path]
        if self.path.is_dir() and not (self.path / "metadata.yaml").exists():
            paths = self._mcap_files()  # a recorder that died before writing metadata.yaml
        reader = AnyReader(paths, default_typestore=self.store)
        if salvage:
            reader.readers = [_SalvageReader(p) for p in paths]
        reader.open()
        if salvage:
            for conn in reader.connections:
                self._expected[conn.topic] = self._expected.get(conn.topic, 0) + conn.msgcount
        return reader

    def close(self) -> None:
        """Close the bag (idempotent)."""
        if self._reader is not None:
            with contextlib.suppress(*_READ_ERRORS):
                self._reader.close()
            self._reader = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def reader(self) -> AnyReader:
        """The underlying rosbags AnyReader (open)."""
        if self._reader is None:
            raise RuntimeError(f"bag {self.path} is not open")
        return self._reader

    @property
    def is_ros1(self) -> bool:
        """True for a ROS 1 bag (raw bytes are ROS 1 serialization, not CDR)."""
        return not self.reader.is2

    @property
    def start_ns(self) -> int:
        """Bag time of the bag's first message (what `ros2 bag info` and viewers count from)."""
        return int(self.reader.start_time)

    @property
    def topics(self) -> dict[str, str]:
        """topic -> message type of every topic in the bag."""
        if self._nothing:
            return {}
        return {c.topic: c.msgtype for c in self.reader.connections}

    # -- reading -----------------------------------------------------------------------------
    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Messages of `topics` (all when None) in bag-time order.

        A storage that fails part way raises CorruptBag naming the time of the last good
        message; with skip_bad the iteration ends there and the loss is counted.
        """
        if self._nothing:
            return
        wanted = None if topics is None else set(topics)
        conns = [c for c in self.reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        last_ns = None
        read = dict.fromkeys({c.topic for c in conns}, 0)
        try:
            for conn, timestamp, raw in self.reader.messages(connections=conns):
                last_ns = timestamp
                read[conn.topic] += 1
                self.report.messages += 1
                yield BagMessage(conn.topic, conn.msgtype, timestamp, raw, conn)
        except _READ_ERRORS as err:
            error = self._error(TruncatedBag, f"bag ends in a damaged record: {err}", last_ns)
            if not self.skip_bad:
                raise error from err
            self.report.note(error)
        if self._expected:
            lost = sum(self._expected.get(t, 0) - n for t, n in read.items())
            if lost > 0:
                error = self._error(LostMessages, f"{lost} message(s) of the metadata are lost")
                self.report.skip(error, lost)

    def decode(self, message: BagMessage) -> Any:
        """Deserialize with the bag's own definitions; raises CorruptBag naming the message."""
        try:
            return self.reader.deserialize(message.raw, message.msgtype)
        except _READ_ERRORS as err:
            raise self._located(CorruptBag, f"cannot decode {message.msgtype}: {err}",
                                message) from err

    def to_cdr(self, message: BagMessage) -> bytes:
        """The message as CDR bytes of the type store's definition of its type (what
        rclpy.serialization.deserialize_message expects): passed through when the bag's
        definition has the same wire format, converted from ROS 1 or migrated otherwise."""
        key = (message.topic, message.msgtype)
        if key not in self._converters:
            self._converters[key] = self._converter(message)
        try:
            return bytes(self._converters[key](message.raw))
        except _READ_ERRORS as err:
            raise self._located(CorruptBag, f"cannot convert {message.msgtype}: {err}",
                                message) from err

    def _converter(self, message: BagMessage) -> Callable[[Any], Any]:
        src = self.reader.typestore
        if message.msgtype not in self.store.fielddefs or message.msgtype not in src.fielddefs:
            raise self._located(UnknownMessageType,
                                f"message type {message.msgtype} is not known", message)
        args = (src, self.store, message.msgtype, message.msgtype, {})
        if is_same_wireformat(*args[:4]):
            return generate_message_converter(*args, src_is2=self.reader.is2, dst_is2=True)
        log.info("%s: %s differs from the type store's definition; migrating its fields",
                 self.path, message.msgtype)
        with contextlib.redirect_stdout(io.StringIO()):  # rosbags prints the same notice
            return generate_message_converter(*args, src_is2=self.reader.is2, dst_is2=True)

    # -- errors ------------------------------------------------------------------------------
    def _error(self, cls: type[BagError], text: str, stamp_ns: int | None = None) -> BagError:
        return cls(text, bag=str(self.path), stamp_ns=stamp_ns)

    def _located(self, cls: type[BagError], text: str, message: BagMessage) -> BagError:
        return cls(text, bag=str(self.path), topic=message.topic, stamp_ns=message.timestamp_ns)


class _TruncatedMcapReader(McapReader):
    """rosbags' MCAP storage reader, limited to the complete records of a file whose end (with
    the summary and its chunk index) is missing: it rebuilds the chunk index from the chunk
    headers, so that rosbags reads the chunks in time order as in an intact file."""

    def _open(self) -> None:
        try:
            super()._open()
            return
        except ReaderError:
            if not self.data_start:  # the header itself is bad: nothing to salvage
                raise
        assert self.bio
        for table in (self.schemas, self.channels, self.connections, self.chunks):
            table.clear()
        size = self.bio.seek(0, os.SEEK_END)
        end = self.data_start
        while end + 9 <= size:  # record = opcode (uint8) + body length (uint64) + body
            self.bio.seek(end)
            op, length = struct.unpack("<BQ", self.bio.read(9))
            if end + 9 + length > size:
                break
            if op == _MCAP_CHUNK:
                self.chunks.append(self._chunk_info(end, 9 + length))
            end += 9 + length
        self.data_end = end
        self.meta_scan()  # schemas, channels and message counts from the complete records
        assert self.statistics
        stats = self.statistics
        every_channel = dict.fromkeys(self.channels, 1)  # lets messages() consider each chunk
        self.chunks[:] = [c._replace(channel_count=every_channel) for c in self.chunks]
        self.connections[:] = [
            c._replace(msgcount=stats.channel_message_counts.get(c.id, 0))
            for c in self.connections
        ]
        self.metadata = self.metadata._replace(
            duration=stats.end_time - stats.start_time + 1 if stats.message_count else 0,
            start_time=stats.start_time,
            end_time=stats.end_time + 1 if stats.message_count else 0,
            message_count=stats.message_count,
        )

    def _chunk_info(self, offset: int, record_length: int) -> ChunkInfo:
        """Index entry of the chunk record at `offset` (the file is positioned at its body)."""
        assert self.bio
        start, stop, uncompressed, _crc, name_length = struct.unpack("<QQQII", self.bio.read(32))
        compression = self.bio.read(name_length).decode()
        (compressed,) = struct.unpack("<Q", self.bio.read(8))
        return ChunkInfo(start, stop, offset, record_length, {}, 0, compression, compressed,
                         uncompressed, {})


class _SalvageDirectoryReader(DirectoryReader):
    STORAGE_PLUGINS: ClassVar = {**DirectoryReader.STORAGE_PLUGINS, "mcap": _TruncatedMcapReader}


class _SalvageReader(Reader2):
    """rosbags' rosbag2 reader whose MCAP storage tolerates a missing end."""

    STORAGE_PLUGINS: ClassVar = {
        **Reader2.STORAGE_PLUGINS,
        "dir": _SalvageDirectoryReader,
        ".mcap": _TruncatedMcapReader,
    }
