"""Control-path latency of the running stack: camera image stamp -> JointTrajectory on the
controller topic, p50 and p99, beside the bare backbone forward time measured in the same run;
and the shield's own decision time.

perception_node, policy_node and shield_node run as separate processes (safari_bringup's
Supervisor, the config's parameters); this script plays camera and robot, publishing RGB-D frames
and joint states stamped with the wall clock, and times what reaches the controller topic.

    source scripts/env.sh && python bench/bench_stack.py [--frames 500] [--rate 5] [--config PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, JointState
from trajectory_msgs.msg import JointTrajectory

from safari_msgs.msg import ShieldDecision
from safari_ros.bags import numpy_to_image
from safari_ros.bringup import Supervisor
from safari_ros.config import load_config
from safari_ros.core import StateBatch, build_model
from safari_ros.graph import node_specs
from safari_ros.nodes.common import stamp_ns
from safari_ros.robot import kinematics as kin
from safari_ros.sim import TabletopSim


def percentiles(values: list[float]) -> str:
    """p50 / p99 / mean in ms."""
    a = np.asarray(values) * 1e3
    return f"p50 {np.percentile(a, 50):7.1f} ms   p99 {np.percentile(a, 99):7.1f} ms   " \
           f"mean {a.mean():7.1f} ms   (n={a.size})"


def bare_forward_time(cfg: dict, rgb: np.ndarray, repeats: int = 30) -> tuple[float, float]:
    """Seconds per frame of prefix, and of prefix + suffix + heads, at batch 1, one thread."""
    torch.set_num_threads(1)
    model = build_model(cfg, device="cpu").eval()
    hp = model.hp.heads
    times_prefix, times_full = [], []
    with torch.no_grad():
        instr = model.encode_instruction(["touch the red cube"])
        for _ in range(repeats + 3):
            t0 = time.perf_counter()
            tokens = model.prefix(model.backbone.preprocess(rgb))
            t1 = time.perf_counter()
            model.suffix_and_heads(StateBatch(tokens, torch.zeros(1, hp.depth_dim),
                                              torch.zeros(1, hp.proprio_dim), instr))
            t2 = time.perf_counter()
            times_prefix.append(t1 - t0)
            times_full.append(t2 - t0)
    return float(np.median(times_prefix[3:])), float(np.median(times_full[3:]))


def main() -> None:
    """Run the three nodes, stream frames, print latency figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--rate", type=float, default=5.0, help="camera frames per second")
    parser.add_argument("--config", default=None)
    ns = parser.parse_args()
    cfg = load_config(ns.config)
    topics = cfg["topics"]
    sim = TabletopSim(cfg)
    rgb, depth = sim.render_rgbd()
    js0 = sim.joint_state()
    info = {k: v for k, v in sim.camera_info().items() if k != "frame_id"}
    sim.close()

    work = Path(tempfile.mkdtemp(prefix="safari_bench_"))
    specs = [s for s in node_specs(cfg, {"use_sim": "false", "run_dir": str(work)})
             if s.name in ("perception_node", "policy_node", "shield_node")]
    sup = Supervisor(specs, work, log_dir=work / "logs")
    sup.start()
    rclpy.init()
    node = Node("bench_stack")
    arrivals: list[tuple[float, int]] = []  # (receive wall time, -) of controller commands
    decisions: list[tuple[float, ShieldDecision]] = []
    node.create_subscription(JointTrajectory, topics["controller_command"],
                             lambda m: arrivals.append((time.time(), 0)), 100)
    node.create_subscription(ShieldDecision, topics["shield_decision"],
                             lambda m: decisions.append((time.time(), m)), 100)
    color_pub = node.create_publisher(Image, topics["color_image"], 5)
    depth_pub = node.create_publisher(Image, topics["depth_image"], 5)
    info_pub = node.create_publisher(CameraInfo, topics["depth_info"], 5)  # perception lifts depth
    joints_pub = node.create_publisher(JointState, topics["joint_states"], 5)
    color_fields, depth_fields = numpy_to_image(rgb, "rgb8"), numpy_to_image(depth, "32FC1")

    def publish_frame() -> int:
        stamp = node.get_clock().now().to_msg()
        js = JointState(name=list(js0.name), position=js0.position.tolist(),
                        velocity=js0.velocity.tolist(), effort=js0.effort.tolist())
        js.header.stamp = stamp
        joints_pub.publish(js)
        for pub, fields in ((color_pub, color_fields), (depth_pub, depth_fields)):
            msg = Image(**fields)
            msg.header.stamp = stamp
            msg.header.frame_id = cfg["frames"]["camera_optical"]
            pub.publish(msg)
        camera_info = CameraInfo(**info)
        camera_info.header = msg.header
        info_pub.publish(camera_info)
        return stamp_ns(stamp)

    print("waiting for the nodes ...", flush=True)
    end = time.monotonic() + 300
    while time.monotonic() < end and not decisions:
        publish_frame()
        t = time.monotonic()
        while time.monotonic() - t < 1.0:
            rclpy.spin_once(node, timeout_sec=0.05)
    if not decisions:
        raise SystemExit(f"the stack never answered; logs in {work / 'logs'}")
    decisions.clear()
    arrivals.clear()
    sent: dict[int, float] = {}
    period = 1.0 / ns.rate
    for _ in range(ns.frames):
        t0 = time.monotonic()
        stamp = publish_frame()
        sent[stamp] = stamp / 1e9
        while time.monotonic() - t0 < period:
            rclpy.spin_once(node, timeout_sec=0.01)
    t = time.monotonic()
    while time.monotonic() - t < 3.0:
        rclpy.spin_once(node, timeout_sec=0.05)
    sup.stop()
    node.destroy_node()
    rclpy.shutdown()

    # Pair each decision with the controller command that preceded it (the shield publishes
    # the command first, then the audit record).
    latencies, decision_ms = [], []
    arrival_times = np.array([a for a, _ in arrivals])
    for received, d in decisions:
        stamp = stamp_ns(d.observation_stamp)
        if stamp not in sent or not d.proposed_action_name:
            continue
        before = arrival_times[arrival_times <= received + 1e-3]
        if before.size:
            latencies.append(before[-1] - sent[stamp])
        decision_ms.append(d.latency_ms / 1e3)
    prefix_s, full_s = bare_forward_time(cfg, rgb)
    arch = cfg["learning"]["backbone"]["architecture"]
    print(f"\nSAFARI control path, {arch} on {torch.get_num_threads()} thread(s) per node, CPU, "
          f"{ns.frames} frames at {ns.rate} Hz, {len(latencies)} answered")
    print(f"image stamp -> JointTrajectory on the controller topic: {percentiles(latencies)}")
    print(f"shield decision time                                 : {percentiles(decision_ms)}")
    print(f"bare backbone, same run: prefix {prefix_s * 1e3:.1f} ms, prefix + suffix + heads "
          f"{full_s * 1e3:.1f} ms per frame (batch 1, 1 thread)")
    if latencies:
        print(f"ratio control-path p50 / bare forward: {np.percentile(latencies, 50) / full_s:.2f}")
    print(f"(node logs in {work / 'logs'}; IK arm: {len(kin.ARM_JOINTS)} joints)")


if __name__ == "__main__":
    main()
