"""Sandbox bring-up: start the node graph of config/tabletop.yaml as separate processes.

The equivalent of ``ros2 launch safari_ros tabletop.launch.py`` where the launch system is not
installed (ROS 2 from PyPI wheels). Both read the graph from ``safari_ros.graph.node_specs``.
Ctrl-C is forwarded; when one node dies the others are stopped, the shield first so that its
stop command reaches the controller while the rest of the graph is still up.

    safari_bringup [--config PATH] [use_sim:=true] [device:=cpu] ...
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import yaml

from safari_ros.config import load_config
from safari_ros.graph import NodeSpec, node_specs

log = logging.getLogger("safari_bringup")
STOP_FIRST = ("shield_node",)


def node_command(spec: NodeSpec, params_file: Path) -> list[str]:
    """The command line that runs one node with its parameters, as `ros2 run` would."""
    return [*spec.prefix, sys.executable, "-m", f"safari_ros.nodes.{spec.executable}", "--ros-args",
            "-r", f"__node:={spec.name}", "--params-file", str(params_file)]


def write_params_file(spec: NodeSpec, folder: Path) -> Path:
    """A ROS 2 parameters file for one node (the format --params-file and launch use)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}.params.yaml"
    path.write_text(yaml.safe_dump({spec.name: {"ros__parameters": spec.parameters}}))
    return path


class Supervisor:
    """Runs the nodes as child processes and stops them all, in order, when one dies."""

    def __init__(self, specs: list[NodeSpec], run_dir: Path, log_dir: Path | None = None) -> None:
        self.specs = specs
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        """Start every node."""
        for spec in self.specs:
            self._spawn(spec, "w")

    def restart(self, name: str) -> None:
        """Start node `name` again (after it died or was killed), appending to its log."""
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            old.kill()
            old.wait()
        self._spawn(next(s for s in self.specs if s.name == name), "a")

    def _spawn(self, spec: NodeSpec, log_mode: str) -> None:
        cmd = node_command(spec, write_params_file(spec, self.run_dir / "params"))
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{spec.name}.log", log_mode)
        # Own session: a terminal's Ctrl-C reaches only the supervisor, which then stops the
        # nodes in order (shield first).
        self.procs[spec.name] = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True)
        log.info("started %s (pid %d)", spec.name, self.procs[spec.name].pid)

    def dead(self) -> dict[str, int]:
        """Nodes that have exited, with their exit codes."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGINT the shield, wait for it, then the rest; SIGKILL whatever outlives the timeout."""
        first = [n for n in STOP_FIRST if n in self.procs]
        rest = [n for n in self.procs if n not in first]
        for group in (first, rest):
            for name in group:
                if self.procs[name].poll() is None:
                    self.procs[name].send_signal(signal.SIGINT)
            deadline = time.monotonic() + timeout_s
            for name in group:
                try:
                    self.procs[name].wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop within %.0f s; killing it", name, timeout_s)
                    self.procs[name].kill()
                    self.procs[name].wait()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt in the main thread. Set explicitly for both:
    a process started from a background job inherits SIGINT ignored, and `kill` sends SIGTERM."""
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)


def parse_launch_args(items: list[str]) -> dict[str, str]:
    """`name:=value` pairs, as ros2 launch takes them."""
    out = {}
    for item in items:
        if ":=" not in item:
            raise SystemExit(f"expected name:=value, got {item!r}")
        k, v = item.split(":=", 1)
        out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    """Start the graph, wait until a node dies or Ctrl-C, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="config YAML (default: tabletop.yaml)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="write each node's output to <dir>/<node>.log instead of the terminal")
    parser.add_argument("arguments", nargs="*", help="launch arguments, name:=value")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    cfg = load_config(ns.config)
    given = parse_launch_args(ns.arguments)
    specs = node_specs(cfg, given)
    run_dir = Path(given.get("run_dir", cfg["launch_arguments"]["run_dir"]["default"]))
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sup = Supervisor(specs, run_dir, ns.log_dir)
    sup.start()
    code = 0
    try:
        while not stopping:
            dead = sup.dead()
            if dead:
                log.error("node(s) exited: %s; stopping the rest", dead)
                code = 1
                break
            time.sleep(0.2)
    finally:
        sup.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
