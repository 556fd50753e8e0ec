"""Pairing messages by their stamps (ROS-free): what the perception and learner nodes need.

- ``ApproximateTimeSync``: for each key-stream item (a colour frame), the other streams' items
  nearest in time within a tolerance (depth frame, joint state), as message_filters'
  ApproximateTime policy does for one pivot stream.
- ``TransitionAssembler``: observation, shield decision and feedback of the same camera stamp,
  plus the next observation, make one transition (s, a, r, c, s', done).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ApproximateTimeSync:
    """Matches each key item with the nearest item of every other stream within tolerance_ns.

    Items are buffered for up to `history` entries per stream; a key item waits until every other
    stream has an item at or after its stamp minus the tolerance (or gives up once the other
    stream has moved past the tolerance window without a match).
    """

    def __init__(self, key: str, others: list[str], tolerance_ns: int, history: int = 50,
                 on_match: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.key, self.others, self.tolerance = key, list(others), int(tolerance_ns)
        self.buffers: dict[str, deque[tuple[int, Any]]] = {
            s: deque(maxlen=history) for s in [key, *others]
        }
        self.on_match = on_match
        self.dropped = 0

    def add(self, stream: str, stamp_ns: int, item: Any) -> list[tuple[int, dict[str, Any]]]:
        """Add an item; returns the (key stamp, {stream: item}) matches completed by it."""
        buf = self.buffers[stream]
        if stream == self.key:
            # Key items are taken in stamp order: one stamped far in the future (a bad clock)
            # then waits at the end instead of blocking every later frame at the head (it
            # stopped perception for `history` frames; found by bench/faults.py).
            if len(buf) == buf.maxlen:
                buf.popleft()
                self.dropped += 1
            buf.insert(bisect.bisect_right([s for s, _ in buf], int(stamp_ns)),
                       (int(stamp_ns), item))
        else:
            buf.append((int(stamp_ns), item))
        matches = []
        keys = self.buffers[self.key]
        while keys:
            stamp, key_item = keys[0]
            group: dict[str, Any] = {self.key: key_item}
            waiting = False
            for s in self.others:
                best = self._nearest(s, stamp)
                if best is not None:
                    group[s] = best
                elif self._may_still_come(s, stamp):
                    waiting = True
                else:
                    group = {}
                    break
            if waiting:
                break
            keys.popleft()
            if group:
                matches.append((stamp, group))
                if self.on_match:
                    self.on_match(stamp, group)
            else:
                self.dropped += 1
        return matches

    def _nearest(self, stream: str, stamp: int) -> Any | None:
        best, best_dt = None, self.tolerance + 1
        for s, item in self.buffers[stream]:
            dt = abs(s - stamp)
            if dt < best_dt:
                best, best_dt = item, dt
        return best

    def _may_still_come(self, stream: str, stamp: int) -> bool:
        buf = self.buffers[stream]
        return not buf or buf[-1][0] < stamp + self.tolerance


@dataclass
class StepParts(Generic[T]):
    """What has arrived for one camera stamp."""

    observation: T | None = None
    decision: Any | None = None
    feedback: Any | None = None


@dataclass
class AssembledStep:
    """One complete transition, in message (or any) form."""

    observation: Any
    decision: Any
    feedback: Any
    next_observation: Any


class TransitionAssembler:
    """Joins observation / decision / feedback by camera stamp and attaches the next observation.

    A non-terminal step is emitted once the next observation (the first with a later stamp) has
    arrived; a terminal one (feedback.done) at once, with its own observation as s' (masked by
    done). Parts older than `horizon` pending stamps are discarded and counted.
    """

    def __init__(self, horizon: int = 64) -> None:
        self.parts: dict[int, StepParts] = {}
        self.obs_stamps: list[int] = []
        self.horizon = horizon
        self.discarded = 0

    def _part(self, stamp: int) -> StepParts:
        return self.parts.setdefault(int(stamp), StepParts())

    def add_observation(self, stamp: int, obs: Any) -> list[AssembledStep]:
        """An Observation of camera stamp `stamp`."""
        self._part(stamp).observation = obs
        bisect.insort(self.obs_stamps, int(stamp))
        return self._collect()

    def add_decision(self, stamp: int, decision: Any) -> list[AssembledStep]:
        """A ShieldDecision answering the observation of `stamp`."""
        self._part(stamp).decision = decision
        return self._collect()

    def add_feedback(self, stamp: int, feedback: Any) -> list[AssembledStep]:
        """The Feedback of the step that started at camera stamp `stamp`."""
        self._part(stamp).feedback = feedback
        return self._collect()

    def _next_obs(self, stamp: int) -> Any | None:
        i = bisect.bisect_right(self.obs_stamps, stamp)
        if i < len(self.obs_stamps):
            return self.parts[self.obs_stamps[i]].observation
        return None

    def _collect(self) -> list[AssembledStep]:
        out = []
        for stamp in sorted(self.parts):
            p = self.parts[stamp]
            if p.observation is None or p.decision is None or p.feedback is None:
                continue
            nxt = p.observation if p.feedback.done else self._next_obs(stamp)
            if nxt is None:
                continue
            out.append(AssembledStep(p.observation, p.decision, p.feedback, nxt))
            p.decision = p.feedback = None  # the observation stays: it is the previous s'
        self._prune()
        return out

    def _prune(self) -> None:
        stamps = sorted(self.parts)
        for stamp in stamps[: max(0, len(stamps) - self.horizon)]:
            p = self.parts.pop(stamp)
            if p.decision is not None or p.feedback is not None:
                self.discarded += 1
            if stamp in self.obs_stamps:
                self.obs_stamps.remove(stamp)
