"""Errors raised on bad bag input, and the report of what `skip_bad=True` left out.

Every error names where it happened (bag, topic, time) so that an operator can find the message
with any bag tool. With ``skip_bad=True`` the same errors are counted by their ``cause`` in a
`ReadReport` instead of being raised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = [
    "BagError",
    "CorruptBag",
    "ImageError",
    "LostMessages",
    "MalformedImage",
    "MissingMetadata",
    "MissingTopic",
    "ReadReport",
    "TruncatedBag",
    "UnknownMessageType",
    "UnsupportedEncoding",
    "describe_skipped",
]


class BagError(Exception):
    """Bad bag input. `cause` is the key under which `ReadReport` counts it when skipped."""

    cause = "bad_input"

    def __init__(
        self,
        message: str,
        *,
        bag: str | None = None,
        topic: str | None = None,
        stamp_ns: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.bag = bag
        self.topic = topic
        self.stamp_ns = stamp_ns

    def locate(
        self, *, bag: str | None = None, topic: str | None = None, stamp_ns: int | None = None
    ) -> Self:
        """Fill in the location fields that are still unknown; returns self (for `raise`)."""
        self.bag = self.bag if self.bag is not None else bag
        self.topic = self.topic if self.topic is not None else topic
        self.stamp_ns = self.stamp_ns if self.stamp_ns is not None else stamp_ns
        return self

    def __str__(self) -> str:
        where = []
        if self.bag is not None:
            where.append(f"bag {self.bag}")
        if self.topic is not None:
            where.append(f"topic {self.topic}")
        if self.stamp_ns is not None:
            where.append(f"t={self.stamp_ns / 1e9:.9f} s")
        return f"{self.message} [{', '.join(where)}]" if where else self.message


class CorruptBag(BagError):  # noqa: N818 (the names the issue uses)
    """The bag (or one message in it) cannot be read: bad file, bad index, undecodable bytes."""

    cause = "corrupt"


class TruncatedBag(CorruptBag):
    """A storage file ends early (a crashed recorder, a partial copy)."""

    cause = "truncated"


class LostMessages(TruncatedBag):
    """Messages the bag's metadata lists that could not be read (counted per message)."""

    cause = "lost_messages"


class MissingMetadata(CorruptBag):
    """A rosbag2 directory without metadata.yaml (a recorder that died before closing the bag,
    or a partial copy): its storage files can still be read, without the metadata's counts."""

    cause = "missing_metadata"


class MissingTopic(BagError):  # noqa: N818 (the names the issue uses)
    """A topic named in the topic map is not in the bag."""

    cause = "missing_topic"


class UnknownMessageType(BagError):  # noqa: N818 (the names the issue uses)
    """A topic holds a message type that neither the bag nor the type store defines, or one that
    the dataset does not know how to interpret for that stream."""

    cause = "unknown_type"


class ImageError(BagError, ValueError):
    """An image message cannot be turned into an array (also raised on live rclpy images)."""

    cause = "bad_image"


class UnsupportedEncoding(ImageError):  # noqa: N818 (the names the issue uses)
    """The image encoding is not one of `images.ENCODINGS`."""

    cause = "unsupported_encoding"


class MalformedImage(ImageError):  # noqa: N818 (the names the issue uses)
    """The image's data size does not match height, width, step and encoding."""

    cause = "malformed_image"


# What each count of `ReadReport.skipped` is, for the summaries people read. The unit comes
# first: a frame (a camera image that did not become a step), a message, a step or a bag.
_CAUSES: dict[str, str] = {
    "corrupt": "message(s) that cannot be decoded",
    "truncated": "storage file(s) that end early: the complete records were read",
    "lost_messages": "message(s) that metadata.yaml lists but the file no longer holds",
    "missing_metadata": "bag(s) without metadata.yaml: the .mcap files were read without it",
    "missing_topic": "configured topic(s) absent from the bag",
    "unknown_type": "topic(s) whose message type cannot serve their stream",
    "bad_image": "frame(s) whose image cannot be converted",
    "unsupported_encoding": "frame(s) with an image encoding that is not supported",
    "malformed_image": "frame(s) whose image data does not match its size",
    "bad_input": "step(s) with bad input",
    "unlabelled_no_primitive": "step(s) whose motion no primitive explains within the residual "
                               "threshold",
    "unlabelled_ambiguous": "step(s) that different primitives explain equally well",
    "unlabelled_no_joint_states": "step(s) whose motion the joint states do not cover",
    "unlabelled_no_frame": "step(s) without a camera frame at their start",
    "unlabelled_outside_episodes": "step(s) outside the annotated episodes",
}


def describe_skipped(skipped: Mapping[str, int]) -> list[str]:
    """One line per cause: '12 frame(s) without a depth message within the tolerance
    (unpaired_depth)'. Causes without a description are named as they are."""
    lines = []
    for cause, count in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])):
        if cause.startswith("unpaired_"):
            text = f"frame(s) without a {cause.removeprefix('unpaired_')} message within the " \
                   "alignment tolerance"
        else:
            text = _CAUSES.get(cause, "item(s)")
        lines.append(f"{count} {text} ({cause})")
    return lines


@dataclass
class ReadReport:
    """What a read produced and, by cause, what it left out (`skip_bad=True`)."""

    bags: list[str] = field(default_factory=list)
    messages: int = 0  # messages read from the bags (all selected topics)
    steps: int = 0
    episodes: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # cause -> count
    problems: list[str] = field(default_factory=list)  # the first MAX_PROBLEMS errors, as text
    # bag -> {"skipped": {cause: count}, "problems": [first texts]}: the summary per bag
    by_bag: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Motion labelling (logs without recorded actions): counts and residuals, see
    # safari_ros.pretrain.labelling; empty when every action was recorded.
    labels: dict[str, Any] = field(default_factory=dict)

    MAX_PROBLEMS = 50
    PROBLEMS_PER_BAG = 5

    def skip(self, error: BagError, count: int = 1) -> None:
        """Count `count` skipped items under the error's cause and keep its text for the log."""
        self.skipped[error.cause] += count
        self.note(error)

    def note(self, error: BagError) -> None:
        """Keep an error's text for the log without counting it."""
        if len(self.problems) < self.MAX_PROBLEMS:
            self.problems.append(str(error))
