"""Build rosbags message objects (standard and safari_msgs types) from numpy arrays and scalars.

Every builder starts from the type store's default message (every field zero / empty, as rosidl
initialises it) and sets the given fields, so a field added to a .msg file later needs no change
here. The type store defaults to `safari_typestore()`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rosbags.convert.converter import default_message
from rosbags.typesys.store import Typestore

from .images import numpy_to_image
from .typestore import safari_typestore

__all__ = [
    "build",
    "make_camera_info",
    "make_feedback",
    "make_header",
    "make_image",
    "make_joint_state",
    "make_scalar",
    "make_shield_decision",
    "make_time",
    "stamp_to_ns",
]

_NS = 1_000_000_000


def build(msgtype: str, store: Typestore | None = None, **fields: Any) -> Any:
    """A `msgtype` message ('sensor_msgs/msg/Image') with `fields` set and the rest defaulted.

    Raises TypeError naming the field when `fields` holds one the type does not have.
    """
    store = store or safari_typestore()
    return dataclasses.replace(default_message(store, msgtype), **fields)


def make_time(stamp_ns: int, store: Typestore | None = None) -> Any:
    """builtin_interfaces/Time for a time in nanoseconds."""
    sec, nanosec = divmod(int(stamp_ns), _NS)
    return build("builtin_interfaces/msg/Time", store, sec=sec, nanosec=nanosec)


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time (rosbags or rclpy)."""
    return int(stamp.sec) * _NS + int(stamp.nanosec)


def make_header(stamp_ns: int, frame_id: str = "", store: Typestore | None = None) -> Any:
    """std_msgs/Header."""
    return build("std_msgs/msg/Header", store, stamp=make_time(stamp_ns, store), frame_id=frame_id)


def make_image(
    array: np.ndarray,
    stamp_ns: int,
    frame_id: str = "",
    encoding: str | None = None,
    store: Typestore | None = None,
) -> Any:
    """sensor_msgs/Image from RGB uint8 (H, W, 3) or depth metres (H, W); see numpy_to_image."""
    return build(
        "sensor_msgs/msg/Image",
        store,
        header=make_header(stamp_ns, frame_id, store),
        **numpy_to_image(array, encoding),
    )


def make_camera_info(
    k: np.ndarray,
    width: int,
    height: int,
    stamp_ns: int,
    frame_id: str = "",
    store: Typestore | None = None,
) -> Any:
    """sensor_msgs/CameraInfo of a pinhole camera without distortion (K 3x3; P = [K | 0])."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    return build(
        "sensor_msgs/msg/CameraInfo",
        store,
        header=make_header(stamp_ns, frame_id, store),
        width=int(width),
        height=int(height),
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=k.reshape(-1).copy(),
        r=np.eye(3).reshape(-1),
        p=np.hstack([k, np.zeros((3, 1))]).reshape(-1),
    )


def make_joint_state(
    names: Sequence[str],
    positions: np.ndarray,
    stamp_ns: int,
    velocities: np.ndarray | None = None,
    store: Typestore | None = None,
) -> Any:
    """sensor_msgs/JointState (radians, rad/s); velocities may be omitted (empty)."""
    return build(
        "sensor_msgs/msg/JointState",
        store,
        header=make_header(stamp_ns, "", store),
        name=list(names),
        position=np.asarray(positions, dtype=np.float64),
        velocity=np.asarray([] if velocities is None else velocities, dtype=np.float64),
        effort=np.zeros(0, dtype=np.float64),
    )


def make_feedback(
    stamp_ns: int,
    *,
    episode_id: int,
    step: int,
    reward: float,
    cost: float,
    cost_sources: Mapping[str, bool] | None = None,
    done: bool = False,
    success: bool = False,
    truncated: bool = False,
    store: Typestore | None = None,
) -> Any:
    """safari_msgs/Feedback; `stamp_ns` is the stamp of the camera frame the step started from."""
    sources = dict(cost_sources or {})
    return build(
        "safari_msgs/msg/Feedback",
        store,
        header=make_header(stamp_ns, "", store),
        episode_id=int(episode_id),
        step=int(step),
        reward=float(reward),
        cost=float(cost),
        cost_sources=list(sources),
        cost_active=np.array(list(sources.values()), dtype=bool),
        done=bool(done),
        truncated=bool(truncated),
        success=bool(success),
    )


def make_shield_decision(
    stamp_ns: int,
    observation_stamp_ns: int,
    *,
    proposed_action: int,
    executed_action: int,
    store: Typestore | None = None,
    **fields: Any,
) -> Any:
    """safari_msgs/ShieldDecision; extra `fields` (names, check codes, reason ...) as given."""
    return build(
        "safari_msgs/msg/ShieldDecision",
        store,
        header=make_header(stamp_ns, "", store),
        observation_stamp=make_time(observation_stamp_ns, store),
        proposed_action_index=int(proposed_action),
        executed_action_index=int(executed_action),
        intervened=int(proposed_action) != int(executed_action),
        **fields,
    )


def make_scalar(msgtype: str, value: Any, store: Typestore | None = None) -> Any:
    """A std_msgs wrapper of one value: make_scalar('std_msgs/msg/String', 'push the cube')."""
    return build(msgtype, store, data=value)
