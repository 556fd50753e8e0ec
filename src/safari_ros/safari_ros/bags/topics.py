"""The topic map: which topic of a bag holds which stream of a step (config/bag_topics.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

import yaml

__all__ = ["READ_STREAMS", "STREAMS", "TopicMap", "default_topic_map_path"]

# Streams read into steps, then the ones only the recorder writes.
READ_STREAMS = (
    "image", "depth", "camera_info", "joint_states", "instruction",
    "action", "feedback", "reward", "cost", "episode",
)
STREAMS = (*READ_STREAMS, "action_proposal", "transition")
_FILE = "bag_topics.yaml"
_REPO_FILE = Path(__file__).resolve().parents[4] / "config" / _FILE


def default_topic_map_path() -> Path:
    """config/bag_topics.yaml of the repository, else of the installed safari_ros share."""
    if _REPO_FILE.is_file():
        return _REPO_FILE
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("safari_ros")) / "config" / _FILE


@dataclass(frozen=True)
class TopicMap:
    """Topic names per stream (None = not read), alignment and episode settings."""

    topics: dict[str, str | None]
    optional: frozenset[str] = frozenset()
    tolerance_s: float = 0.02
    offsets_s: dict[str, float] = field(default_factory=dict)
    episode_gap_s: float = 2.0

    def __post_init__(self) -> None:
        unknown = set(self.topics) | set(self.optional) | set(self.offsets_s)
        unknown -= set(STREAMS)
        if unknown:
            raise ValueError(f"unknown stream(s) {sorted(unknown)}; streams are {STREAMS}")
        if not self.topics.get("image"):
            raise ValueError("the topic map must name an image topic: steps are keyed on it")
        if self.tolerance_s <= 0 or self.episode_gap_s <= 0:
            raise ValueError("tolerance_s and episode gap_s must be positive")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **topics: str | None) -> Self:
        """Read a topic map YAML (default: config/bag_topics.yaml); `topics` override streams."""
        p = Path(path) if path else default_topic_map_path()
        data: dict[str, Any] = yaml.safe_load(p.read_text()) or {}
        alignment = data.get("alignment") or {}
        base = cls(
            topics={s: data.get("topics", {}).get(s) for s in STREAMS},
            optional=frozenset(data.get("optional") or ()),
            tolerance_s=float(alignment.get("tolerance_s", 0.02)),
            offsets_s={k: float(v) for k, v in (alignment.get("offsets_s") or {}).items()},
            episode_gap_s=float((data.get("episodes") or {}).get("gap_s", 2.0)),
        )
        return base.with_topics(**topics) if topics else base

    def with_topics(self, **topics: str | None) -> Self:
        """A copy with some streams renamed (or switched off with None)."""
        return replace(self, topics={**self.topics, **topics})

    def topic(self, stream: str) -> str | None:
        """The topic of a stream, None when it is not read."""
        return self.topics.get(stream)

    def read_topics(self) -> dict[str, str]:
        """stream -> topic for every stream read into steps."""
        return {s: t for s in READ_STREAMS if (t := self.topics.get(s))}
