"""Loading config/tabletop.yaml and the typed views every component shares.

The YAML is the single source of truth (ARCHITECTURE.md, principle 2): the action set and the
safety limits defined here are what the simulator monitors, what the shield enforces and what the
model's heads range over.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

CONFIG_ENV = "SAFARI_CONFIG"
_REPO_CONFIG = Path(__file__).resolve().parents[3] / "config" / "tabletop.yaml"


class ConfigError(ValueError):
    """A configuration file is missing, malformed or inconsistent."""


def default_config_path() -> Path:
    """The config in use: $SAFARI_CONFIG, else the repository's, else the installed share copy."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    if _REPO_CONFIG.is_file():
        return _REPO_CONFIG
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("safari_ros")) / "config" / "tabletop.yaml"
    except Exception as exc:
        raise ConfigError(
            f"no config found: set {CONFIG_ENV} or run from the repository ({_REPO_CONFIG})"
        ) from exc


def load_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read the YAML config; raises ConfigError naming the file on any problem.

    A file with a top-level ``extends: other.yaml`` (relative to its own folder) is an overlay:
    the other file is loaded first and this one is deep-merged onto it (deep_merge), so a domain
    such as config/hri.yaml states only what it adds or changes to config/tabletop.yaml."""
    p = Path(path) if path else default_config_path()
    data = _load_layers(p, ())
    for key in ("actions", "safety"):
        if key not in data:
            raise ConfigError(f"config file {p} lacks the '{key}' section")
    data["_path"] = str(p)
    return data


def _load_layers(p: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """One file with its `extends` chain merged in, relative file keys resolved per file."""
    if p.resolve() in seen:
        raise ConfigError(f"config file {p}: 'extends' cycle through {[str(s) for s in seen]}")
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {p}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    # Each layer's relative paths name files beside that layer, wherever the merge takes them.
    _resolve_files(data, p.resolve().parent)
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str) or not base_name:
        raise ConfigError(f"config file {p}: 'extends' must name one YAML file")
    base_path = Path(os.path.normpath(p.resolve().parent / base_name))
    base = _load_layers(base_path, (*seen, p.resolve()))
    merged = deep_merge(base, data)
    # Provenance for reports: the files under this one, innermost first.
    merged["_extends"] = [*base.get("_extends", []), str(base_path)]
    return merged


def deep_merge(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of `base` with `override` merged in recursively: mappings merge key by key, any
    other value (lists included) replaces the base's, and a None value deletes the key."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Files named in the YAML, by section and key: a relative path names a file beside the YAML (the
# repository's models/ from config/, or the installed share folder), wherever the command runs.
FILE_KEYS = (("learning", "backbone", "weights"), ("learning", "backbone", "model_config_dir"))


def _resolve_files(data: dict[str, Any], base: Path) -> None:
    for *sections, key in FILE_KEYS:
        node: Any = data
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        value = node.get(key) if isinstance(node, dict) else None
        if value and not Path(str(value)).expanduser().is_absolute():
            node[key] = os.path.normpath(base / str(value))


@dataclass(frozen=True)
class ActionSpec:
    """One discrete primitive: a Cartesian step direction, a gripper command, or a backup action."""

    index: int
    name: str
    description: str
    delta: tuple[float, float, float] = (0.0, 0.0, 0.0)  # unit direction, scaled by step_m
    gripper: str | None = None  # "open" / "close"
    backup: bool = False


def action_specs(cfg: dict[str, Any]) -> list[ActionSpec]:
    """The configured action set, in index order."""
    specs = []
    for i, a in enumerate(cfg["actions"]["set"]):
        delta = tuple(float(v) for v in a.get("delta", (0, 0, 0)))
        if len(delta) != 3:
            raise ConfigError(f"action {a.get('name')}: delta must have 3 entries")
        specs.append(
            ActionSpec(
                index=i,
                name=str(a["name"]),
                description=str(a["description"]),
                delta=delta,  # type: ignore[arg-type]
                gripper=a.get("gripper"),
                backup=bool(a.get("backup", False)),
            )
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"action names must be unique: {names}")
    for required in ("stop", "home"):
        if required not in names:
            raise ConfigError(f"the action set must contain the backup action '{required}'")
    return specs


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in the base frame (metres)."""

    name: str
    center: np.ndarray
    half_extents: np.ndarray
    kind: str = ""

    @classmethod
    def from_min_max(cls, name: str, lo: Any, hi: Any) -> Box:
        """Box from its two corners."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        return cls(name, (lo + hi) / 2, (hi - lo) / 2)

    @property
    def min(self) -> np.ndarray:
        """Lower corner."""
        return self.center - self.half_extents

    @property
    def max(self) -> np.ndarray:
        """Upper corner."""
        return self.center + self.half_extents

    def contains(self, p: np.ndarray, margin: float = 0.0) -> bool:
        """True when point p lies inside the box grown by margin."""
        offset = np.abs(np.asarray(p, float) - self.center)
        return bool(np.all(offset <= self.half_extents + margin))

    def signed_distance(self, p: np.ndarray, margin: float = 0.0) -> float:
        """Chebyshev distance of p outside the box grown by margin (negative inside)."""
        return float(np.max(np.abs(np.asarray(p, float) - self.center) - self.half_extents
                            - margin))

    def segment_intersects(self, a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
        """True when the segment a->b passes through the box grown by margin (slab test)."""
        a, b = np.asarray(a, float), np.asarray(b, float)
        lo, hi = self.min - margin, self.max + margin
        d = b - a
        t0, t1 = 0.0, 1.0
        for i in range(3):
            if abs(d[i]) < 1e-12:
                if a[i] < lo[i] or a[i] > hi[i]:
                    return False
                continue
            ta, tb = (lo[i] - a[i]) / d[i], (hi[i] - a[i]) / d[i]
            t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
            if t0 > t1:
                return False
        return True


@dataclass(frozen=True)
class SafetyLimits:
    """The hard limits of config['safety'], shared by the simulator's monitors and the shield."""

    workspace: Box
    keep_out_zones: tuple[Box, ...]
    keep_out_margin_m: float  # clearance of the hand and links around the TCP/link points
    ee_speed_limit_mps: float
    joint_limit_margin_rad: float
    joint_speed_fraction: float  # share of the arm's joint velocity limits a motion may use
    table_clearance_m: float
    tau_safe: float
    watchdog_s: float
    joint_state_max_lag_s: float  # joint state older than the observation by this -> stop
    backup_for_reason: dict[str, str] = field(default_factory=dict)


def safety_limits(cfg: dict[str, Any]) -> SafetyLimits:
    """Typed view of config['safety']."""
    s = cfg["safety"]
    zones = tuple(
        Box(
            str(z["name"]),
            np.asarray(z["center"], float),
            np.asarray(z["half_extents"], float),
            str(z.get("kind", "")),
        )
        for z in s.get("keep_out_zones", [])
    )
    return SafetyLimits(
        workspace=Box.from_min_max("workspace", s["workspace"]["min"], s["workspace"]["max"]),
        keep_out_zones=zones,
        keep_out_margin_m=float(s.get("keep_out_margin_m", 0.0)),
        ee_speed_limit_mps=float(s["ee_speed_limit_mps"]),
        joint_limit_margin_rad=float(s["joint_limit_margin_rad"]),
        joint_speed_fraction=float(s["joint_speed_fraction"]),
        table_clearance_m=float(s["table_clearance_m"]),
        tau_safe=float(s["tau_safe"]),
        watchdog_s=float(s["watchdog_s"]),
        joint_state_max_lag_s=float(s["joint_state_max_lag_s"]),
        backup_for_reason=dict(s.get("backup_for_reason", {})),
    )
