"""What every SAFARI node shares: parameter declaration, QoS profiles, stamps, token packing.

Nodes stay thin: parameters, QoS, timers and message conversion live here or in the node; all
learning, shielding and simulation logic is in the ROS-free core.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions

from safari_ros.bringup import interrupt_on_signals
from safari_ros.config import load_config

# REP-2003: sensor subscribers are best effort; publishers keep the default reliable profile.
SENSOR_QOS = qos_profile_sensor_data
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Late joiners (the operator panel, a restarted policy) get the last value: instruction, status.
LATCHED_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


def declare(node: Node, name: str, default: Any, description: str, read_only: bool = False) -> Any:
    """Declare one parameter with a descriptor and return its value."""
    node.declare_parameter(
        name, default, ParameterDescriptor(description=description, read_only=read_only)
    )
    return node.get_parameter(name).value


def node_config(node: Node) -> dict[str, Any]:
    """Declare the `config` parameter (path of tabletop.yaml) and load that file."""
    path = declare(node, "config", "", "path of the SAFARI config YAML; empty: the default",
                   read_only=True)
    return load_config(path or None)


def stamp_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds (exact, for use as a key)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_stamp(ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time."""
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def pack_tokens(msg: Any, tokens: np.ndarray, use_float16: bool = True) -> None:
    """Put a (tokens, width) array into an Observation: shape, dtype and the flat data."""
    arr = np.ascontiguousarray(tokens)
    msg.token_shape = [int(s) for s in arr.shape]
    if use_float16:
        msg.token_dtype = "float16"
        msg.tokens_f16 = arr.astype(np.float16).reshape(-1).view(np.uint16)
    else:
        msg.token_dtype = "float32"
        msg.tokens_f32 = arr.astype(np.float32).reshape(-1)


def unpack_tokens(msg: Any) -> np.ndarray:
    """The token array of an Observation as float32; ValueError when shape and data disagree."""
    shape = tuple(int(s) for s in msg.token_shape)
    if msg.token_dtype == "float16":
        flat = np.asarray(msg.tokens_f16, dtype=np.uint16).view(np.float16)
    elif msg.token_dtype == "float32":
        flat = np.asarray(msg.tokens_f32, dtype=np.float32)
    else:
        raise ValueError(f"unknown token dtype {msg.token_dtype!r}")
    if not shape or int(np.prod(shape)) != flat.size:
        raise ValueError(f"token data of {flat.size} values does not fit shape {shape}")
    return flat.astype(np.float32).reshape(shape)


SIGNAL_POLL_S = 0.2


def run_node(make_node: Callable[[], Node], args: list[str] | None = None,
             before_shutdown: Callable[[Node], None] | None = None, threads: int = 2) -> None:
    """Initialise rclpy, spin the node, and on Ctrl-C or SIGTERM call before_shutdown while
    the context is still up (the shield sends its stop there), then shut down cleanly."""
    # rclpy's own handler would shut the context down before we could publish a last message.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    interrupt_on_signals()
    node = make_node()
    executor = MultiThreadedExecutor(num_threads=threads)
    executor.add_node(node)
    try:
        # Python runs a signal handler only when the main thread runs bytecode; an unbounded
        # wait never returns to it when nothing arrives (perception after the camera stopped),
        # so the main thread wakes up every SIGNAL_POLL_S to let Ctrl-C / SIGTERM through.
        while rclpy.ok():
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # A second Ctrl-C (a terminal signals the whole group) must not cut the last messages.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if before_shutdown is not None and rclpy.ok():
            before_shutdown(node)
            # Let DDS hand the last messages over before the participant disappears.
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()


def model_parameters(node: Node, cfg: dict[str, Any], build: Callable[..., Any]) -> tuple[Any, str]:
    """Declare the model parameters (device, backbone_weights, torch_threads, seed) and build
    the SAFARI model from cfg with them; returns (model, device)."""
    import torch

    device = declare(node, "device", "auto", "torch device: auto, cpu, cuda, cuda:N")
    weights = declare(node, "backbone_weights", "",
                      "local open_clip weights file; empty: learning.backbone.weights")
    threads = declare(node, "torch_threads", 1, "CPU threads for torch in this process")
    seed = declare(node, "seed", 0, "seed of the adapter and head initialisation")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(max(1, int(threads)))
    if weights:  # a command-line path is relative to where the command runs
        cfg["learning"]["backbone"]["weights"] = str(Path(weights).expanduser().resolve())
    torch.manual_seed(int(seed))
    model = build(cfg, device=device)
    node.get_logger().info(f"model {model.backbone_id} on {device}")
    return model, device


def observation_state(msg: Any, n_joints: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, depth features, proprioception) of an Observation; ValueError when malformed.

    Proprioception is joint positions and velocities in the order of msg.joint_state (the arm
    joints, then the fingers, as the robot publishes them) followed by the end-effector position.
    """
    from safari_ros.core import proprio_vector
    from safari_ros.core.features import DEPTH_CHANNELS

    tokens = unpack_tokens(msg)
    # NaN or inf tokens made the policy's probabilities NaN, and its sampling raised and took
    # the node down (found by bench/faults.py); in the learner they would poison the replay.
    if not np.isfinite(tokens).all():
        raise ValueError("tokens hold NaN or inf")
    depth = np.asarray(msg.depth_features, np.float32)
    grid = [int(g) for g in msg.depth_grid]
    if (len(grid) != 2 or depth.size != grid[0] * grid[1] * DEPTH_CHANNELS
            or not np.isfinite(depth).all()):
        raise ValueError(f"depth features of size {depth.size} do not fit grid {grid} x "
                         f"{DEPTH_CHANNELS} channels")
    js = msg.joint_state
    ee = (msg.ee_position.x, msg.ee_position.y, msg.ee_position.z)
    proprio = proprio_vector(js.position[:n_joints], js.velocity[:n_joints], ee, n_joints)
    return tokens, depth, proprio
