"""The topic map: which topic of a bag holds which stream of a step (config/bag_topics.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Self

import yaml

__all__ = [
    "LABEL_FREE_STREAMS",
    "READ_STREAMS",
    "STREAMS",
    "LabelSettings",
    "TopicMap",
    "default_topic_map_path",
]

# Streams read into steps, then the ones only the recorder writes. `command` (the controller's
# JointTrajectory) is read only when steps are labelled from the recorded motion.
READ_STREAMS = (
    "image", "depth", "camera_info", "joint_states", "instruction",
    "action", "feedback", "reward", "cost", "episode", "command",
)
STREAMS = (*READ_STREAMS, "action_proposal", "transition")
# What a log that did not run SAFARI lacks: with motion labelling these are not read (the action
# comes from the motion, the cost from the hard-limit checks).
LABEL_FREE_STREAMS = ("action", "feedback", "reward", "cost")


@dataclass(frozen=True)
class LabelSettings:
    """How steps of a log without recorded actions are labelled with primitives (the
    `labelling:` section of the topic map; safari_ros.pretrain.labelling uses them)."""

    # A step is labelled only when its best primitive's prediction lies within this many
    # `actions.step_m` of the recorded motion (TCP and gripper); other steps are skipped.
    residual_threshold: float = 0.5
    # ... and no primitive predicting a different motion (more than this many step_m away) may
    # fit within this many step_m of the best: such a step is ambiguous and skipped.
    ambiguity_margin: float = 0.15
    # Finger travel (m, each finger) that counts as much as one step_m of TCP motion: the
    # gripper term of the residual. A gripper primitive explains fingers that moved at least this
    # far towards its target (a grasp stops the fingers on the object, short of the target).
    gripper_unit_m: float = 0.01
    # A step's observation is the last camera frame before its start, at most this old.
    max_frame_age_s: float = 0.15
    # The recorded motion is checked against the hard limits as cubics through the joint states
    # at least this far apart (the shield's checks of one motion, run on what happened).
    check_period_s: float = 0.1
    # Joint states further apart than this leave the time between them uncovered: a step there
    # is skipped rather than labelled from an interpolation over a dead stream.
    max_joint_gap_s: float = 0.1

    def __post_init__(self) -> None:
        if not (self.residual_threshold > 0 and self.ambiguity_margin >= 0
                and self.gripper_unit_m > 0
                and self.max_frame_age_s >= 0 and self.check_period_s > 0
                and self.max_joint_gap_s > 0):
            raise ValueError(f"labelling settings must be positive: {self}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSettings:
        """From the topic map's `labelling:` section; an unknown key is an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown labelling setting(s) {sorted(unknown)}; known: "
                             f"{sorted(known)}")
        return cls(**{k: float(v) for k, v in data.items()})
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
    labelling: LabelSettings = field(default_factory=LabelSettings)

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
            labelling=LabelSettings.from_dict(data.get("labelling") or {}),
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

    @property
    def labels_from_motion(self) -> bool:
        """True when the map reads no action stream: actions are then labelled from the recorded
        motion (safari_ros.pretrain.labelling) instead of read from SAFARI's topics."""
        return not self.topics.get("action")

    def for_motion_labels(self) -> Self:
        """A copy for logs that did not run SAFARI: no action, feedback, reward or cost stream."""
        return self.with_topics(**dict.fromkeys(LABEL_FREE_STREAMS))
