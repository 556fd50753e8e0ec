"""config/evaluation.yaml resolved into one self-contained config per run.

A run's resolved config is ``{"tabletop": ..., "method": ..., "protocol": ..., "seed": s}``: the
loaded config/tabletop.yaml, the harness's method settings and the preset's protocol. Every run is
SCAPO plus dotted-key overrides (``tabletop.safety.tau_safe: 0.3``); an override must name a key
that exists, so a typo fails loudly instead of silently evaluating the default.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safari_ros.config import ConfigError, deep_merge, default_config_path, load_config

__all__ = [
    "EVALUATION_CONFIG",
    "METHODS_GROUP",
    "Plan",
    "RunConfig",
    "apply_overrides",
    "build_plan",
    "config_diff",
    "deep_merge",
    "default_evaluation_path",
    "flatten",
    "load_evaluation_config",
]

EVALUATION_CONFIG = "evaluation.yaml"
METHODS_GROUP = "methods"  # group name of the method comparison (ablations use their own)
REFERENCE = "scapo"  # the full method: reference of every diff and every ablation group


def default_evaluation_path() -> Path:
    """evaluation.yaml beside the tabletop config in use (repository or installed share)."""
    return default_config_path().parent / EVALUATION_CONFIG


def load_evaluation_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read config/evaluation.yaml (or `path`); ConfigError naming the file on any problem."""
    p = Path(path) if path else default_evaluation_path()
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read evaluation config {p}: {exc}") from exc
    for key in ("method_base", "methods", "ablations", "protocol", "presets"):
        if not isinstance(data, dict) or key not in data:
            raise ConfigError(f"evaluation config {p} lacks the '{key}' section")
    if REFERENCE not in data["methods"]:
        raise ConfigError(f"evaluation config {p}: methods must include '{REFERENCE}'")
    return data


def apply_overrides(resolved: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of `resolved` with dotted-key overrides set; unknown keys are refused."""
    out = copy.deepcopy(resolved)
    for dotted, value in overrides.items():
        *path, leaf = dotted.split(".")
        node = out
        for part in path:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {dotted!r}: no key {part!r} in the resolved config")
            node = node[part]
        if not isinstance(node, dict) or leaf not in node:
            raise ConfigError(f"override {dotted!r}: no key {leaf!r} in the resolved config")
        node[leaf] = copy.deepcopy(value)
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested dict under dotted keys (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (value in a, value in b)} for every leaf that differs (or exists in one)."""
    fa, fb = flatten(a), flatten(b)
    missing = object()
    diff = {}
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key, missing), fb.get(key, missing)
        if va != vb:
            diff[key] = (None if va is missing else va, None if vb is missing else vb)
    return diff


@dataclass(frozen=True)
class RunConfig:
    """One (configuration, seed) to run."""

    name: str  # method or ablation variant, e.g. "scapo", "zero_shot", "tau_safe_0.3"
    group: str  # METHODS_GROUP or the ablation group
    seed: int
    resolved: dict[str, Any] = field(repr=False)
    overrides: dict[str, Any] = field(default_factory=dict)  # relative to SCAPO


@dataclass
class Plan:
    """Everything one harness invocation runs."""

    preset: str
    seeds: list[int]
    runs: list[RunConfig]
    groups: dict[str, list[str]]  # group -> config names, reference first
    reference: dict[str, Any]  # SCAPO's resolved config (seed 0), for the report

    def names(self) -> list[str]:
        """Distinct configuration names in run order."""
        return list(dict.fromkeys(r.name for r in self.runs))


def _reference_config(
    eval_cfg: dict[str, Any], tabletop: dict[str, Any], preset: dict[str, Any],
    cli_overrides: dict[str, Any],
) -> dict[str, Any]:
    base = {k: v for k, v in tabletop.items() if not k.startswith("_")}
    resolved = {
        "tabletop": copy.deepcopy(base),
        "method": copy.deepcopy(eval_cfg["method_base"]),
        "protocol": copy.deepcopy(eval_cfg["protocol"]),
    }
    resolved = apply_overrides(resolved, preset.get("overrides") or {})
    return apply_overrides(resolved, cli_overrides)


def build_plan(
    preset: str,
    eval_cfg: dict[str, Any] | None = None,
    tabletop: dict[str, Any] | None = None,
    cli_overrides: dict[str, Any] | None = None,
    methods: list[str] | None = None,
    ablations: bool = True,
) -> Plan:
    """All runs of a preset: each method and ablation variant for each seed.

    cli_overrides are dotted keys applied after the preset's (e.g. the weights path, seeds).
    """
    eval_cfg = eval_cfg if eval_cfg is not None else load_evaluation_config()
    tabletop = tabletop if tabletop is not None else load_config()
    if preset not in eval_cfg["presets"]:
        raise ConfigError(f"unknown preset {preset!r}; known: {sorted(eval_cfg['presets'])}")
    pre = eval_cfg["presets"][preset] or {}
    reference = _reference_config(eval_cfg, tabletop, pre, cli_overrides or {})
    seeds = list(range(int(reference["protocol"]["seeds"])))
    if not seeds:
        raise ConfigError("protocol.seeds must be >= 1")

    chosen = list(eval_cfg["methods"]) if methods is None else list(methods)
    unknown = sorted(set(chosen) - set(eval_cfg["methods"]))
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; known: {sorted(eval_cfg['methods'])}")
    if REFERENCE not in chosen:
        chosen.insert(0, REFERENCE)  # every diff and ablation is relative to it
    configs: dict[str, tuple[str, dict[str, Any]]] = {
        name: (METHODS_GROUP, eval_cfg["methods"][name] or {}) for name in chosen
    }
    groups = {METHODS_GROUP: list(configs)}
    if ablations:
        for group, variants in deep_merge(eval_cfg["ablations"], pre.get("ablations")).items():
            groups[group] = [REFERENCE]
            for name, overrides in (variants or {}).items():
                if name in configs:
                    raise ConfigError(f"ablation {group}.{name} reuses the name of another run")
                configs[name] = (group, overrides or {})
                groups[group].append(name)

    runs = []
    for name, (group, overrides) in configs.items():
        resolved = apply_overrides(reference, overrides)
        for seed in seeds:
            # The seed drives heads/adapters init, episodes, action sampling and replay sampling;
            # the random-init backbone keeps its own fixed seed (the same "pretrained" model).
            r = apply_overrides(resolved, {"tabletop.learning.replay.sampling_seed": seed})
            r["seed"] = seed
            runs.append(RunConfig(name, group, seed, r, dict(overrides)))
    ref0 = apply_overrides(reference, {"tabletop.learning.replay.sampling_seed": 0}) | {"seed": 0}
    return Plan(preset, seeds, runs, groups, ref0)
