"""The node graph of config['nodes'], resolved against launch arguments.

launch/tabletop.launch.py (ROS 2 distribution) and the sandbox bring-up (safari_bringup) both call
``node_specs`` so that they start the same nodes with the same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from safari_ros.config import ConfigError

PACKAGE = "safari_ros"
_BOOL = {"true": True, "false": False}


@dataclass(frozen=True)
class NodeSpec:
    """One node to start: console script, node name, parameters, whether it is a lifecycle node,
    and its CPU niceness (started under `nice -n`; 0 = as the caller)."""

    name: str
    executable: str
    parameters: dict[str, Any]
    lifecycle: bool = False
    nice: int = 0

    @property
    def prefix(self) -> list[str]:
        """The command prefix that applies the niceness (launch's `prefix`, bring-up's argv)."""
        return ["nice", "-n", str(self.nice)] if self.nice else []


def launch_arguments(cfg: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Declared launch arguments: name -> {default, description}."""
    return {k: {"default": str(v.get("default", "")), "description": str(v.get("description", ""))}
            for k, v in cfg.get("launch_arguments", {}).items()}


def resolve_arguments(cfg: dict[str, Any], given: dict[str, str] | None = None) -> dict[str, str]:
    """Defaults overridden by the given arguments; an unknown argument is an error."""
    declared = launch_arguments(cfg)
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(f"unknown launch argument(s) {unknown}; known: {sorted(declared)}")
    return {k: str(given.get(k, v["default"])) for k, v in declared.items()}


def _typed(value: str) -> Any:
    return _BOOL.get(value.lower(), value)


def node_specs(cfg: dict[str, Any], given: dict[str, str] | None = None) -> list[NodeSpec]:
    """The nodes to start for these launch arguments, in config order."""
    args = resolve_arguments(cfg, given)
    use_sim = _typed(args.get("use_sim", "false")) is True
    specs = []
    for name, node in cfg.get("nodes", {}).items():
        gate = node.get("only_with")
        if gate and _typed(args[gate]) is not True:
            continue
        params: dict[str, Any] = {"config": cfg["_path"], "use_sim_time": use_sim}
        params.update(node.get("parameters", {}))
        for param, arg in node.get("from_args", {}).items():
            if arg not in args:
                raise ConfigError(f"nodes.{name}.from_args names unknown launch argument {arg!r}")
            params[param] = _typed(args[arg])
        nice = node.get("nice", 0)
        if not isinstance(nice, int) or not 0 <= nice <= 19:
            raise ConfigError(f"nodes.{name}.nice must be an integer in [0, 19], got {nice!r}")
        specs.append(NodeSpec(name, str(node["executable"]), params, bool(node.get("lifecycle")),
                              nice))
    return specs
