"""Replay a bag's messages onto topics: items in bag-time order, optionally paced in wall time.

A ROS node publishes each item with ``deserialize_message(item.data, get_message(item.msgtype))``
(data is CDR in the ROS 2 definitions of `safari_typestore()`, also for ROS 1 bags), or with
``decode=True`` gets rosbags message objects for ROS-free consumers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from .errors import BagError, ReadReport
from .reader import BagReader

__all__ = ["ReplayItem", "paced", "replay"]


class ReplayItem(NamedTuple):
    """One message to publish: topic, rosidl type, payload, bag time (ns)."""

    topic: str
    msgtype: str  # 'sensor_msgs/msg/Image'
    data: Any  # CDR bytes, or the rosbags message object with decode=True
    timestamp_ns: int


def replay(
    path: str | os.PathLike[str],
    *,
    topics: Iterable[str] | None = None,
    rate: float | None = None,
    decode: bool = False,
    skip_bad: bool = False,
    report: ReadReport | None = None,
) -> Iterator[ReplayItem]:
    """The bag's messages (of `topics`, all when None) in time order.

    Args:
        rate: wall-clock pacing factor (1.0 = as recorded, 2.0 = twice as fast); None or 0 =
            as fast as possible.
        decode: yield rosbags message objects instead of CDR bytes.
        skip_bad: leave out messages that cannot be converted/decoded (counted in `report`)
            and salvage a truncated bag, instead of raising.
    """
    with BagReader(path, skip_bad=skip_bad, report=report) as bag:
        items = _items(bag, topics, decode)
        yield from paced(items, rate) if rate else items


def _items(bag: BagReader, topics: Iterable[str] | None, decode: bool) -> Iterator[ReplayItem]:
    convert = bag.decode if decode else bag.to_cdr
    for message in bag.messages(topics):
        try:
            data = convert(message)
        except BagError as err:
            if not bag.skip_bad:
                raise
            bag.report.skip(err)
            continue
        yield ReplayItem(message.topic, message.msgtype, data, message.timestamp_ns)


def paced(
    items: Iterable[ReplayItem],
    rate: float = 1.0,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[ReplayItem]:
    """Yield each item when its bag time, scaled by 1/rate, has elapsed since the first item.

    Deadlines are computed from the start (not item to item), so a slow consumer catches up
    instead of drifting.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    first_ns: int | None = None
    start = 0.0
    for item in items:
        if first_ns is None:
            first_ns, start = item.timestamp_ns, clock()
        delay = start + (item.timestamp_ns - first_ns) / 1e9 / rate - clock()
        if delay > 0:
            sleep(delay)
        yield item
