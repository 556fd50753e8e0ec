"""Helpers for the tests: deterministic filling of ROS messages and child processes over DDS."""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

_INTS = {"uint8": (0, 255), "uint16": (0, 65535), "uint32": (0, 2**32 - 1),
         "uint64": (0, 2**64 - 1), "int8": (-128, 127), "int16": (-32768, 32767),
         "int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1), "octet": (0, 255),
         "char": (0, 255), "byte": (0, 255)}


def ros_class(type_name: str) -> type:
    """'std_msgs/Header' or 'safari_msgs/msg/Observation' -> the rclpy message class."""
    parts = type_name.split("/")
    pkg, name = parts[0], parts[-1]
    kind = parts[1] if len(parts) == 3 else "msg"
    module = importlib.import_module(f"{pkg}.{kind}")
    if kind == "action" and "_" in name:  # RunEpisode_Goal -> RunEpisode.Goal
        base, part = name.rsplit("_", 1)
        return getattr(getattr(module, base), part)
    return getattr(module, name)


def _value(rng: random.Random, ftype: str) -> Any:
    if ftype.startswith("sequence<"):
        inner = ftype[len("sequence<"):-1].split(",")[0]
        return [_value(rng, inner) for _ in range(rng.randint(1, 4))]
    if ftype.endswith("]") and "[" in ftype:
        inner, n = ftype[:-1].split("[")
        return [_value(rng, inner) for _ in range(int(n))]
    if ftype.startswith("string") or ftype.startswith("wstring"):
        return "".join(rng.choice("abcdefghij KLMNOP_xyz") for _ in range(rng.randint(1, 12)))
    if ftype == "boolean":
        return rng.random() < 0.5
    if ftype in ("float", "double"):
        # Multiples of 1/8 survive float32 exactly, so equality is a fair check.
        return rng.randint(-4000, 4000) / 8.0
    if ftype in _INTS:
        lo, hi = _INTS[ftype]
        return rng.randint(lo, hi)
    if ftype == "builtin_interfaces/Time" or ftype == "builtin_interfaces/Duration":
        cls = ros_class(ftype)
        return cls(sec=rng.randint(0, 2**31 - 1), nanosec=rng.randint(0, 999_999_999))
    return fill(ros_class(ftype)(), rng)


def fill(msg: Any, rng: random.Random) -> Any:
    """Set every field of msg (recursively) to a seeded non-default value; returns msg."""
    for name, ftype in msg.get_fields_and_field_types().items():
        setattr(msg, name, _value(rng, ftype))
    return msg


def filled(type_name: str, seed: int = 0) -> Any:
    """A new message of type_name with every field set from a seed derived from its name."""
    rng = random.Random(f"{seed}:{type_name}")
    return fill(ros_class(type_name)(), rng)


def interface_names() -> dict[str, list[str]]:
    """All safari_msgs interfaces found in the source tree, by kind."""
    root = REPO / "src" / "safari_msgs"
    return {kind: sorted(p.stem for p in (root / kind).glob(f"*.{kind}"))
            for kind in ("msg", "srv", "action")}


def python_child(args: list[str], **kwargs: Any) -> subprocess.Popen:
    """Start `python args...` with this process's environment (same DDS domain, same paths)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "src" / "safari_ros"), str(REPO / "test"), env.get("PYTHONPATH", "")]
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.Popen([sys.executable, *args], env=env, **kwargs)


def tcp_path_enters_zone(start: Any, end: Any, zones: Any) -> str:
    """Name of the first keep-out zone the straight TCP path start -> end enters, by dense
    sampling (independent of the shield's slab test); '' if none."""
    import numpy as np

    return path_enters_zone([start + t * (end - start) for t in np.linspace(0.0, 1.0, 201)],
                            zones)


def path_enters_zone(path: Any, zones: Any) -> str:
    """Name of the first keep-out zone a densely sampled TCP path enters; '' if none. A path
    that starts inside a zone and only gets less deep is leaving it, which the shield allows."""
    import numpy as np

    for z in zones:
        depths = [float(np.max(np.abs(p - z.center) - z.half_extents)) for p in path]
        if depths[0] < 0 and min(depths[1:]) > depths[0]:
            continue
        if min(depths) < 0:
            return z.name
    return ""
