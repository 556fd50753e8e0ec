"""Fault injection on the running stack: what each fault does to the arm's commands, the nodes,
the replay and the checkpoints, repeated N times, idle or beside two CPU-burning processes.

perception_node, policy_node, shield_node and learner_node run as separate processes over real
DDS (the config's graph, parameters and QoS; the test suite's tiny model unless --config). A
robot player process stands in for the robot (sim_node's topics without its lockstep): it
publishes RGB-D frames, joint states and per-frame Feedback, stamped with the wall clock, at
--rate Hz; SIGUSR1 / SIGUSR2 pause and resume its joint states / its camera. This process
listens to every topic and injects the faults.

Columns: stop latency past the watchdog deadline (the shield's stop on the controller topic,
minus the arrival of the last proposal before it plus safety.watchdog_s; both seen here),
motion commands that should have been stops (a non-stop command after the deadline while the
fault lasts, one answering an observation older than watchdog_s when decided, or one with
non-finite positions or positions beyond the joint limits), node crashes (any node but the
one killed dying), transitions lost across a learner crash (published on /safari/transition,
hence written, but absent from the replay bags afterwards), corrupt files loaded (a policy
proposing with a refused checkpoint's version, or a learner checkpoint under its final name
that fails validation), and the time until the stack answers fresh frames once the fault clears.

    source scripts/env.sh && python bench/faults.py [--n 10] [--load] [--quick]
        [--only kill_policy,kill_perception] [--rate 5] [--config PATH]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))  # the node tests' tiny stack (nodes.stack_support)

WATCHDOG_FAULTS = ("kill_policy", "kill_perception", "kill_camera", "sigstop_policy",
                   "sigstop_perception", "joint_states_stop", "camera_stop")
FAULTS = (*WATCHDOG_FAULTS, "kill_learner", "learner_disk_full", "bad_checkpoint",
          "malformed_input")
PAUSE_S = 2.0  # SIGSTOP, and a stream's silence, last this long
# What each node publishes all the time (the learner its status, every status_period_s).
HEARTBEATS = {"perception_node": "observation", "policy_node": "action_proposal",
              "shield_node": "shield_decision", "learner_node": "learner_status"}
HEARTBEAT_S = 3.0


# ---------------------------------------------------------------------------- robot player
def run_player(config: str, rate: float) -> None:
    """The robot: one rendered RGB-D frame and the home joint state, re-stamped and published at
    `rate`, each with a Feedback for the learner; SIGUSR1/SIGUSR2 toggle joints/camera."""
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image, JointState

    from safari_msgs.msg import Feedback
    from safari_ros.bags import numpy_to_image
    from safari_ros.config import load_config
    from safari_ros.sim import TabletopSim

    cfg = load_config(config)
    t = cfg["topics"]
    sim = TabletopSim(cfg)
    rgb, depth = sim.render_rgbd()
    js0 = sim.joint_state()
    info = {k: v for k, v in sim.camera_info().items() if k != "frame_id"}
    sim.close()
    paused = {"joints": False, "camera": False}

    def toggle(key: str) -> Callable[..., None]:
        def handler(signum: int, frame: Any) -> None:
            paused[key] = not paused[key]
        return handler

    signal.signal(signal.SIGUSR1, toggle("joints"))
    signal.signal(signal.SIGUSR2, toggle("camera"))
    rclpy.init()
    node = Node("robot_player")
    color_pub = node.create_publisher(Image, t["color_image"], 5)
    depth_pub = node.create_publisher(Image, t["depth_image"], 5)
    info_pub = node.create_publisher(CameraInfo, t["depth_info"], 5)  # perception lifts depth
    joints_pub = node.create_publisher(JointState, t["joint_states"], 5)
    feedback_pub = node.create_publisher(Feedback, t["feedback"], 10)
    fields = {"color": numpy_to_image(rgb, "rgb8"), "depth": numpy_to_image(depth, "32FC1")}
    steps = int(cfg["sim"]["episode_steps"])
    tick = 0
    while rclpy.ok():
        start = time.monotonic()
        stamp = node.get_clock().now().to_msg()
        if not paused["joints"]:
            js = JointState(name=list(js0.name), position=js0.position.tolist(),
                            velocity=js0.velocity.tolist(), effort=js0.effort.tolist())
            js.header.stamp = stamp
            js.header.frame_id = cfg["frames"]["base"]
            joints_pub.publish(js)
        if not paused["camera"]:
            for pub, key in ((color_pub, "color"), (depth_pub, "depth")):
                msg = Image(**fields[key])
                msg.header.stamp = stamp
                msg.header.frame_id = cfg["frames"]["camera_optical"]
                pub.publish(msg)
            camera_info = CameraInfo(**info)
            camera_info.header = msg.header
            info_pub.publish(camera_info)
            done = tick % steps == steps - 1
            fb = Feedback(episode_id=tick // steps, step=tick % steps, reward=0.0, cost=0.0,
                          done=done, truncated=done)
            fb.header.stamp = stamp
            feedback_pub.publish(fb)
            tick += 1
        time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - start)))


# ---------------------------------------------------------------------------- the stack
class Stack:
    """The four nodes and the robot player as processes, with kill / restart / signals."""

    def __init__(self, config: Path, work: Path, rate: float) -> None:
        from safari_ros.bringup import Supervisor
        from safari_ros.config import load_config
        from safari_ros.graph import node_specs

        self.cfg = load_config(config)
        self.work = work
        specs = [s for s in node_specs(self.cfg, {"use_sim": "false",
                                                  "run_dir": str(work / "run")})]
        self.sup = Supervisor(specs, work / "run", log_dir=work / "logs")
        self.player_cmd = [sys.executable, str(Path(__file__).resolve()), "--player",
                           "--config", str(config), "--rate", str(rate)]

    def start(self) -> None:
        self.sup.start()
        self.restart("robot_player")

    def command(self, name: str) -> list[str]:
        from safari_ros.bringup import node_command

        if name == "robot_player":
            return self.player_cmd
        spec = next(s for s in self.sup.specs if s.name == name)
        return node_command(spec, self.work / "run" / "params" / f"{name}.params.yaml")

    def restart(self, name: str, max_file_bytes: int | None = None) -> None:
        """Start `name` again (after a kill), logging to the same file; max_file_bytes: the
        process's RLIMIT_FSIZE (`ulimit -f`), a full disk for what it writes."""
        def limit() -> None:
            if max_file_bytes is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

        old = self.sup.procs.get(name)
        if old is not None and old.poll() is None:
            old.kill()
            old.wait()
        log = open(self.work / "logs" / f"{name}.log", "a")
        self.sup.procs[name] = subprocess.Popen(self.command(name), stdout=log,
                                                stderr=subprocess.STDOUT,
                                                start_new_session=True, preexec_fn=limit)

    def signal(self, name: str, sig: int) -> None:
        os.kill(self.sup.procs[name].pid, sig)

    def dead(self) -> dict[str, int]:
        return self.sup.dead()

    def stop(self) -> None:
        self.sup.stop(timeout_s=15)


class Burners:
    """Two CPU-burning processes (the load the issue's kill trials ran beside)."""

    def __init__(self, count: int) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(count)]

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


# ---------------------------------------------------------------------------- observer
class Observer:
    """This process's node: everything the stack publishes, with its arrival time (monotonic)."""

    def __init__(self, cfg: dict) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from std_msgs.msg import String
        from trajectory_msgs.msg import JointTrajectory

        from safari_msgs.msg import (
            ActionProposal,
            AdapterCheckpoint,
            LearnerStatus,
            Observation,
            ShieldDecision,
            Transition,
        )
        from safari_msgs.srv import SetMode
        from safari_ros.nodes.common import LATCHED_QOS

        rclpy.init()
        self.node = Node("fault_bench")
        # monotonic arrival times + this = wall clock (the stamps of the stack's messages)
        self.wall_offset = time.time() - time.monotonic()
        self.cfg = cfg
        t = cfg["topics"]
        self.seen: dict[str, list[tuple[float, Any]]] = {}
        for key, msg_type in (("controller_command", JointTrajectory),
                              ("shield_decision", ShieldDecision),
                              ("action_proposal", ActionProposal), ("observation", Observation),
                              ("transition", Transition), ("diagnostics", DiagnosticArray),
                              ("learner_status", LearnerStatus)):
            self.seen[key] = []
            self.node.create_subscription(msg_type, t[key], self._keep(key), 100)
        self.set_mode = self.node.create_client(SetMode, "/safari/set_mode")
        self.announce = self.node.create_publisher(AdapterCheckpoint, t["adapter_checkpoint"],
                                                   LATCHED_QOS)
        self.mode_pub = self.node.create_publisher(String, "/safari/mode", LATCHED_QOS)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinning = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self.spinning:
            self.executor.spin_once(timeout_sec=0.05)

    def _keep(self, key: str) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            self.seen[key].append((time.monotonic(), msg))
        return callback

    def since(self, key: str, t0: float) -> list[tuple[float, Any]]:
        return [(t, m) for t, m in list(self.seen[key]) if t >= t0]

    def learn_mode(self) -> None:
        """Switch the shield (and so the learner) to learn: updates and checkpoints run."""
        from safari_msgs.srv import SetMode

        assert self.set_mode.wait_for_service(timeout_sec=60), "no /safari/set_mode"
        future = self.set_mode.call_async(SetMode.Request(mode=SetMode.Request.LEARN))
        wait_for(future.done, 30)

    def close(self) -> None:
        import rclpy

        self.spinning = False
        self.thread.join()
        self.node.destroy_node()
        rclpy.shutdown()


def wait_for(done: Callable[[], Any], timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if done():
            return True
        time.sleep(step)
    return bool(done())


# ---------------------------------------------------------------------------- one trial
@dataclass
class Trial:
    """What one repetition of a fault measured (None: does not apply)."""

    past_deadline_s: float | None = None  # the stop's arrival here
    sent_past_deadline_s: float | None = None  # its stamp: when the shield sent it
    bad_motions: int = 0
    crashes: int = 0
    lost: int | None = None
    corrupt_loaded: int | None = None
    recover_s: float | None = None
    notes: list[str] = field(default_factory=list)


class Bench:
    """Faults against one running stack."""

    def __init__(self, stack: Stack, obs: Observer, flood_s: float) -> None:
        from safari_ros.config import safety_limits
        from safari_ros.nodes.shield_node import JOINTS, STOP_SETTLE_S

        self.stack, self.obs, self.flood_s = stack, obs, flood_s
        self.watchdog_s = safety_limits(stack.cfg).watchdog_s
        self.stop_settle_s = STOP_SETTLE_S
        self.joints = list(JOINTS)
        self.bad_versions: set[int] = set()
        self.lost_before: set[int] = set()  # transitions an earlier trial already counted lost
        self.next_bad_version = 1_000_000

    # -------------------------------------------------------------- helpers
    def is_stop(self, traj: Any) -> bool:
        if len(traj.points) != 1:
            return False
        d = traj.points[0].time_from_start
        return abs(d.sec + d.nanosec * 1e-9 - self.stop_settle_s) < 1e-6

    def unsafe_command(self, traj: Any) -> bool:
        """Non-finite, unknown joints or beyond the joint limits: never acceptable."""
        from safari_ros.robot import kinematics as kin

        if list(traj.joint_names) != self.joints or not traj.points:
            return True
        for p in traj.points:
            q = np.asarray(p.positions, float)
            if q.size != len(self.joints) or not np.all(np.isfinite(q)):
                return True
            if np.any(q[:7] < kin.JOINT_LOWER) or np.any(q[:7] > kin.JOINT_UPPER):
                return True
        return False

    def stale_motions(self, t0: float) -> int:
        """Motions executed since t0 for an observation older than watchdog_s when decided, or
        with a command that is unsafe in itself."""
        from safari_ros.nodes.common import stamp_ns

        bad = sum(self.unsafe_command(m) for _, m in self.obs.since("controller_command", t0))
        for _, d in self.obs.since("shield_decision", t0):
            if d.proposed_action_name and d.executed_action_name != "stop":
                # at the shield's receipt (the stamp is taken after its decision time)
                age = ((stamp_ns(d.header.stamp) - stamp_ns(d.observation_stamp)) / 1e9
                       - d.latency_ms / 1e3)
                bad += int(age > self.watchdog_s)
        return bad

    def flowing(self, timeout: float = 120) -> bool:
        """Fresh decisions keep coming: 3 within the last second."""
        return wait_for(lambda: len(self.obs.since(
            "shield_decision", time.monotonic() - 1.0)) >= 3, timeout, 0.1)

    def recovered_after(self, t_clear_wall: float, timeout: float = 180) -> float | None:
        """Seconds from the fault clearing until a decision answers a frame taken after it."""
        from safari_ros.nodes.common import stamp_ns

        t0 = time.monotonic()

        def fresh() -> float | None:
            for t, d in self.obs.since("shield_decision", t0):
                stamp = stamp_ns(d.observation_stamp) / 1e9
                # (not a stamp from the future: the malformed input sends such)
                if d.proposed_action_name and t_clear_wall < stamp < time.time() + 1.0:
                    return t
            return None

        if not wait_for(lambda: fresh() is not None, timeout, 0.05):
            return None
        return fresh() - t0

    def crashes(self, killed: str = "") -> int:
        """Nodes (but the one killed) that exited, or that publish nothing for HEARTBEAT_S: a
        node whose callback raised can hang in its shutdown instead of exiting."""
        time.sleep(HEARTBEAT_S)
        return len(self.down() - {killed})

    def down(self) -> set[str]:
        """Nodes that exited or published nothing in the last HEARTBEAT_S."""
        now = time.monotonic()
        silent = {name for name, topic in HEARTBEATS.items()
                  if not self.obs.since(topic, now - HEARTBEAT_S)}
        return set(self.stack.dead()) | silent

    # -------------------------------------------------------------- watchdog faults
    def watchdog_fault(self, inject: Callable[[], None], clear: Callable[[], None],
                       killed: str = "") -> Trial:
        """Inject, time the watchdog stop, check nothing but stops went out after the
        deadline, clear, time the recovery."""
        from safari_ros.nodes.common import stamp_ns

        trial = Trial()
        if not self.flowing():
            trial.notes.append("stack not flowing before the fault")
            return trial
        t_fault = time.monotonic()
        inject()

        def stop() -> tuple[float, Any] | None:
            # The stop that answers the watchdog is matched by the shield's own stamps (the
            # command is stamped as sent, the decision just after): under load the two topics
            # can reach this process in either order and far apart.
            watchdog = next((stamp_ns(d.header.stamp) for _, d in
                             self.obs.since("shield_decision", t_fault)
                             if d.reason.startswith("watchdog")), None)
            if watchdog is None:
                return None
            return next(((t, c) for t, c in self.obs.since("controller_command", t_fault)
                         if self.is_stop(c)
                         and abs(stamp_ns(c.header.stamp) - watchdog) < 50_000_000), None)

        if wait_for(lambda: stop() is not None, 10):
            t_stop, command = stop()
            # The deadline counts from the shield's receipt of the last proposal (its decision's
            # stamp less its decision time, wall clock): this process may see that proposal
            # late under load. The stop counts when it arrives here, on the controller topic.
            last = max(((t, d) for t, d in self.obs.seen["shield_decision"]
                        if t < t_stop and d.proposed_action_name), key=lambda x: x[0],
                       default=None)
            if last is None:
                deadline = t_fault + self.watchdog_s
            else:
                received_wall = stamp_ns(last[1].header.stamp) / 1e9 - last[1].latency_ms / 1e3
                deadline = received_wall - self.obs.wall_offset + self.watchdog_s
            trial.past_deadline_s = t_stop - deadline
            # Arrival here less sending there: what this process and DDS add under load.
            trial.sent_past_deadline_s = (stamp_ns(command.header.stamp) / 1e9
                                          - self.obs.wall_offset - deadline)
            # Until the fault clears, nothing but stops may reach the controller.
            hold_until = t_fault + PAUSE_S
            wait_for(lambda: time.monotonic() >= hold_until, PAUSE_S + 1)
            trial.bad_motions += sum(not self.is_stop(c) for t, c in
                                     self.obs.since("controller_command", deadline))
        else:
            trial.notes.append("no watchdog stop within 10 s")
            trial.bad_motions += 1
        t_clear = time.monotonic()
        clear()
        trial.recover_s = self.recovered_after(time.time())
        # Queued input released at the clear (SIGCONT) must not execute stale motions.
        wait_for(lambda: False, 1.0)
        trial.bad_motions += self.stale_motions(t_clear)
        trial.crashes = self.crashes(killed)
        return trial

    def kill(self, name: str) -> Trial:
        return self.watchdog_fault(lambda: self.stack.signal(name, signal.SIGKILL),
                                   lambda: self.stack.restart(name), killed=name)

    def sigstop(self, name: str) -> Trial:
        return self.watchdog_fault(lambda: self.stack.signal(name, signal.SIGSTOP),
                                   lambda: self.stack.signal(name, signal.SIGCONT))

    def silence(self, sig: int) -> Trial:
        return self.watchdog_fault(lambda: self.stack.signal("robot_player", sig),
                                   lambda: self.stack.signal("robot_player", sig))

    # -------------------------------------------------------------- learner faults
    def bag_stamps(self) -> set[int]:
        """Header stamps of every transition in the replay bags (damaged parts skipped)."""
        from rclpy.serialization import deserialize_message

        from safari_msgs.msg import Transition
        from safari_ros.bags import BagReader
        from safari_ros.nodes.common import stamp_ns

        out: set[int] = set()
        for bag in sorted(p for p in (self.stack.work / "run" / "replay").glob("*")
                          if p.is_dir()):  # bags, not the open one's journal
            try:
                with BagReader(bag, skip_bad=True) as reader:
                    for m in reader.messages(["/safari/transition"]):
                        msg = deserialize_message(reader.to_cdr(m), Transition)
                        out.add(stamp_ns(msg.header.stamp))
            except Exception:  # an unreadable bag loses all it held: counted as lost
                continue
        return out

    def corrupt_checkpoints(self) -> int:
        """Learner checkpoints under their final name that fail validation."""
        from safari_ros.core.checkpoint import CheckpointError, read_checkpoint_info

        bad = 0
        for path in (self.stack.work / "run" / "checkpoints").glob("*.safetensors"):
            try:
                read_checkpoint_info(path)
            except CheckpointError:
                bad += 1
        return bad

    def learner_crash(self, max_file_bytes: int | None) -> Trial:
        """kill -9 at a random moment of learning (replay and checkpoint writes), or run it
        on a full disk; then restart it and count what it had published but lost."""
        from safari_ros.nodes.common import stamp_ns

        trial = Trial()
        if not self.flowing():
            trial.notes.append("stack not flowing before the fault")
            return trial
        t0 = time.monotonic()
        if max_file_bytes is not None:
            # A disk that fills up: the learner restarted with a file size limit.
            self.stack.restart("learner_node", max_file_bytes)
            wait_for(lambda: False, 15 + random.random() * 5)
            trial.crashes = int("learner_node" in self.stack.dead())
        else:
            wait_for(lambda: len(self.obs.since("transition", t0)) >= 3, 60)
            wait_for(lambda: False, random.random() * 2)
        if "learner_node" not in self.stack.dead():
            self.stack.signal("learner_node", signal.SIGKILL)
        t_kill = time.monotonic()
        published = {stamp_ns(m.header.stamp) for t, m in self.obs.seen["transition"]
                     if t < t_kill}
        clear_wall = time.time()
        t_clear = time.monotonic()
        self.stack.restart("learner_node")
        # Recovered once a transition stamped after the restart comes: under load one the old
        # learner published before the kill can still arrive after it (a run counted that as
        # recovery 0.14 s after the restart, then the journal not yet recovered as lost).
        ok = wait_for(lambda: any(stamp_ns(m.header.stamp) / 1e9 > clear_wall
                                  for _, m in self.obs.since("transition", t_clear)), 180)
        trial.recover_s = time.monotonic() - t_clear if ok else None
        if max_file_bytes is not None:
            # Only transitions published while the disk was full count: the earlier ones were
            # written without limit.
            published = {s for s in published if s / 1e9 > clear_wall - (t_clear - t0)}
        lost = published - self.bag_stamps()
        trial.lost = len(lost - self.lost_before)
        self.lost_before |= lost
        trial.corrupt_loaded = self.corrupt_checkpoints() + self.loaded_bad_versions()
        trial.crashes += self.crashes()
        # The control loop does not need the learner.
        trial.bad_motions = self.stale_motions(t0)
        return trial

    # -------------------------------------------------------------- checkpoints
    def loaded_bad_versions(self) -> int:
        return sum(m.adapter_version in self.bad_versions
                   for _, m in self.obs.seen["action_proposal"])

    def bad_checkpoint(self, i: int) -> Trial:
        """An announcement of a truncated, altered, mismatched or missing file, in turn."""
        from diagnostic_msgs.msg import KeyValue
        from safetensors import safe_open
        from safetensors.torch import save_file

        from safari_msgs.msg import AdapterCheckpoint
        from safari_ros.core.backbone import file_sha256
        from safari_ros.core.checkpoint import sidecar_path

        trial = Trial()
        folder = self.stack.work / "run" / "checkpoints"
        if not wait_for(lambda: list(folder.glob("*.safetensors")), 120, 0.5):
            trial.notes.append("the learner wrote no checkpoint")
            return trial
        good = sorted(folder.glob("*.safetensors"))[-1]
        sha_good = sidecar_path(good).read_text().split()[0]
        kind = ("truncated", "altered", "mismatched", "missing")[i % 4]
        bad = self.stack.work / f"bad_{i}_{kind}.safetensors"
        data = good.read_bytes()
        sha = sha_good  # announced as the good file's: a damaged copy
        if kind == "truncated":
            bad.write_bytes(data[: len(data) // 2])
        elif kind == "altered":
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0xFF
            bad.write_bytes(bytes(flipped))
        elif kind == "mismatched":  # intact, its own sha256, made for another action set
            with safe_open(str(good), framework="pt") as f:
                meta = dict(f.metadata())
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta["action_names"] = '["a", "b"]'
            save_file(tensors, str(bad), metadata=meta)
            sha = file_sha256(bad)
        version = self.next_bad_version
        self.next_bad_version += 1
        self.bad_versions.add(version)
        backbone = self.obs.seen["observation"][-1][1].backbone_id
        msg = AdapterCheckpoint(version=version, path=str(bad), sha256=sha, backbone_id=backbone,
                                validation_metrics=[KeyValue(key="td_error", value="0.1")])
        t0 = time.monotonic()
        self.obs.announce.publish(msg)

        def refused() -> bool:
            return any(s.name == "safari/policy" and s.message.startswith("refused")
                       and str(bad) in s.message
                       for _, a in self.obs.since("diagnostics", t0) for s in a.status)

        if not wait_for(refused, 20):
            trial.notes.append(f"{kind}: no refusal reported")
        wait_for(lambda: False, 1.0)
        trial.corrupt_loaded = self.loaded_bad_versions()
        trial.crashes = self.crashes()
        trial.bad_motions = self.stale_motions(t0)
        trial.recover_s = 0.0 if self.flowing(10) else None
        return trial

    # -------------------------------------------------------------- malformed input
    def malformed_input(self) -> Trial:
        """flood_s of malformed messages on every topic a node subscribes, as fast as this
        process publishes them, beside the good streams."""
        trial = Trial()
        if not self.flowing():
            trial.notes.append("stack not flowing before the fault")
            return trial
        t0 = time.monotonic()
        pubs = MalformedPublishers(self.obs, self.stack.cfg)
        sent = pubs.flood(self.flood_s)
        pubs.restore()
        t_clear = time.monotonic()
        trial.recover_s = self.recovered_after(time.time())
        wait_for(lambda: False, 1.0)
        trial.crashes = self.crashes()
        trial.bad_motions = self.stale_motions(t0)
        trial.notes.append(f"{sent} malformed messages in {t_clear - t0:.1f} s")
        pubs.close()
        return trial


# ---------------------------------------------------------------------------- malformed input
FAR_PAST = (1, 0)
FAR_FUTURE = (2**31 - 1, 0)


class MalformedPublishers:
    """Malformed variants of every message a SAFARI node subscribes, from templates the stack
    itself published (so each variant has exactly one thing wrong with it)."""

    def __init__(self, obs: Observer, cfg: dict) -> None:
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from std_msgs.msg import String

        from safari_msgs.msg import (
            ActionProposal,
            Feedback,
            Observation,
            ShieldDecision,
            Transition,
        )
        from safari_ros.nodes.common import LATCHED_QOS

        self.obs, self.cfg = obs, cfg
        t = cfg["topics"]
        node = obs.node
        self.pubs = {
            "color": node.create_publisher(Image, t["color_image"], 10),
            "depth": node.create_publisher(Image, t["depth_image"], 10),
            "depth_info": node.create_publisher(CameraInfo, t["depth_info"], 10),
            "joints": node.create_publisher(JointState, t["joint_states"], 10),
            "observation": node.create_publisher(Observation, t["observation"], 10),
            "proposal": node.create_publisher(ActionProposal, t["action_proposal"], 10),
            "decision": node.create_publisher(ShieldDecision, t["shield_decision"], 10),
            "feedback": node.create_publisher(Feedback, t["feedback"], 10),
            "replay_in": node.create_publisher(Transition, "/safari/replay_in", 10),
            "instruction": node.create_publisher(String, t["instruction"], LATCHED_QOS),
        }
        self.instruction = String(data="touch the red cube")
        self.variants = self._variants()

    def now(self, offset_s: float = 0.0) -> Any:
        from rclpy.time import Time

        return Time(nanoseconds=self.obs.node.get_clock().now().nanoseconds
                    + int(offset_s * 1e9)).to_msg()

    def _stamped(self, msg: Any, stamp: tuple[int, int] | None) -> Any:
        from builtin_interfaces.msg import Time

        msg.header.stamp = Time(sec=stamp[0], nanosec=stamp[1]) if stamp else self.now()
        return msg

    def _variants(self) -> list[tuple[str, Callable[[], Any]]]:
        """(publisher key, builder) pairs; builders run at publish time (fresh stamps)."""
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from std_msgs.msg import String

        from safari_msgs.msg import Feedback, Transition
        from safari_ros.robot import kinematics as kin

        obs_t = self.obs.seen["observation"][-1][1]
        prop_t = self.obs.seen["action_proposal"][-1][1]
        dec_t = self.obs.seen["shield_decision"][-1][1]
        names = [*kin.ARM_JOINTS, *kin.FINGER_JOINTS]
        good_q = [0.0, -0.37, 0.0, -2.63, 0.0, 2.26, -0.79, 0.04, 0.04]

        def image(enc: str, w: int, h: int, step: int, size: int, stamp=None,
                  frame: str = "camera_optical") -> Callable[[], Any]:
            return lambda: self._stamped(Image(encoding=enc, width=w, height=h, step=step,
                                               data=bytes(size), header=_header(frame)), stamp)

        def nan_depth() -> Any:
            arr = np.full((64, 64), np.nan, np.float32)
            arr[::2] = np.inf
            return self._stamped(Image(encoding="32FC1", width=64, height=64, step=256,
                                       data=arr.tobytes()), None)

        def joints(position, velocity=None, names_=names, stamp=None) -> Callable[[], Any]:
            return lambda: self._stamped(JointState(
                name=list(names_), position=list(position),
                velocity=list(velocity if velocity is not None else [0.0] * len(position))),
                stamp)

        def observation(mutate: Callable[[Any], None], stamp=None) -> Callable[[], Any]:
            def build() -> Any:
                msg = copy.deepcopy(obs_t)
                self._stamped(msg, stamp)
                mutate(msg)
                return msg
            return build

        def proposal(mutate: Callable[[Any], None], obs_offset_s: float = 0.0,
                     stamp=None) -> Callable[[], Any]:
            def build() -> Any:
                msg = copy.deepcopy(prop_t)
                self._stamped(msg, stamp)
                msg.observation_stamp = self.now(obs_offset_s)
                mutate(msg)
                return msg
            return build

        def setattr_(name: str, value: Any) -> Callable[[Any], None]:
            return lambda m: setattr(m, name, value)

        def decision(mutate: Callable[[Any], None]) -> Callable[[], Any]:
            def build() -> Any:
                msg = copy.deepcopy(dec_t)
                self._stamped(msg, None)
                msg.observation_stamp = msg.header.stamp
                mutate(msg)
                return msg
            return build

        def feedback(**kw: Any) -> Callable[[], Any]:
            return lambda: self._stamped(Feedback(**kw), None)

        def transition() -> Any:
            msg = Transition()
            msg.observation = copy.deepcopy(obs_t)
            msg.observation.token_shape = [3, 3]
            msg.next_observation = copy.deepcopy(obs_t)
            msg.reward = math.nan
            return self._stamped(msg, None)

        nan9 = [math.nan] * 9
        return [
            ("color", image("weird42", 64, 64, 192, 64 * 192)),
            ("color", image("rgb8", 64, 64, 192, 100)),  # data shorter than step x height
            ("color", image("rgb8", 0, 0, 0, 0)),  # empty
            ("color", image("rgb8", 64, 64, 192, 64 * 192, frame="nowhere")),
            ("color", image("rgb8", 64, 64, 192, 64 * 192, stamp=FAR_PAST)),
            ("color", image("rgb8", 64, 64, 192, 64 * 192, stamp=FAR_FUTURE)),
            ("color", image("rgb8", 2048, 2048, 6144, 2048 * 6144)),  # huge: 12.6 MB
            ("depth", image("16UC1", 64, 64, 10, 640)),  # step below width x 2
            ("depth", image("64FC1", 64, 64, 512, 64 * 512)),
            ("depth", nan_depth),
            # intrinsics that are no pinhole model: perception keeps the last good ones
            ("depth_info", lambda: self._stamped(CameraInfo(width=64, height=64), None)),
            ("depth_info", lambda: self._stamped(CameraInfo(width=64, height=64, k=nan9), None)),
            ("depth_info", lambda: self._stamped(
                CameraInfo(width=64, height=64, k=[-50.0, 0, 32, 0, 50.0, 32, 0, 0, 1]), None)),
            ("joints", joints(nan9)),
            ("joints", joints(good_q, [math.inf] * 9)),
            ("joints", joints([], [], names_=names)),  # names without positions
            ("joints", joints(good_q[:4], names_=names)),  # wrong size
            ("joints", joints(good_q, names_=[f"j{i}" for i in range(9)])),  # unknown names
            ("joints", joints(good_q, stamp=FAR_FUTURE)),
            ("joints", joints(good_q, stamp=FAR_PAST)),
            ("observation", observation(setattr_("token_dtype", "int8"))),
            ("observation", observation(setattr_("token_shape", [7, 7]))),
            ("observation", observation(lambda m: setattr(
                m, "tokens_f16", np.full(len(m.tokens_f16), 0x7E00, np.uint16)))),  # NaN f16
            ("observation", observation(lambda m: setattr(
                m, "tokens_f16", np.full(len(m.tokens_f16), 0x7C00, np.uint16)))),  # inf f16
            ("observation", observation(setattr_("depth_features", [math.nan] * 4))),
            ("observation", observation(setattr_("backbone_id", "someone-else"))),
            ("observation", observation(lambda m: setattr(m.joint_state, "position", nan9))),
            ("observation", observation(lambda m: None, stamp=FAR_FUTURE)),
            ("observation", observation(lambda m: None, stamp=FAR_PAST)),
            ("proposal", proposal(setattr_("action_index", 999))),
            ("proposal", proposal(setattr_("constraint_probabilities",
                                           [math.nan] * len(prop_t.constraint_probabilities)))),
            ("proposal", proposal(setattr_("constraint_probabilities", [0.0]))),
            ("proposal", proposal(setattr_("constraint_probabilities", []))),
            ("proposal", proposal(lambda m: None, obs_offset_s=3600.0)),
            ("proposal", proposal(lambda m: None, obs_offset_s=-3600.0)),
            ("proposal", proposal(lambda m: None, stamp=FAR_FUTURE)),
            ("decision", decision(setattr_("executed_action_index", 999))),
            ("decision", decision(setattr_("constraint_value", math.nan))),
            ("feedback", feedback(reward=math.nan, cost=math.inf, done=True)),
            ("feedback", feedback(step=2**32 - 1, cost=-1.0)),
            ("replay_in", transition),
            ("instruction", lambda: String(data="")),
            ("instruction", lambda: String(data="x" * 100_000)),
        ]

    def flood(self, seconds: float) -> int:
        """Publish the variants round-robin for `seconds` (the huge image at most 4 per s)."""
        sent, end, last_huge = 0, time.monotonic() + seconds, 0.0
        while time.monotonic() < end:
            for key, build in self.variants:
                msg = build()
                if getattr(msg, "width", 0) == 2048:
                    if time.monotonic() - last_huge < 0.25:
                        continue
                    last_huge = time.monotonic()
                self.pubs[key].publish(msg)
                sent += 1
        return sent

    def restore(self) -> None:
        """The instruction is latched: put a task's back."""
        self.pubs["instruction"].publish(self.instruction)

    def close(self) -> None:
        for pub in self.pubs.values():
            self.obs.node.destroy_publisher(pub)


def _header(frame: str) -> Any:
    from std_msgs.msg import Header

    return Header(frame_id=frame)


# ---------------------------------------------------------------------------- table
def ms(values: list[float], q: float) -> str:
    return f"{np.percentile(np.asarray(values) * 1e3, q):.0f}" if values else "-"


def row(name: str, trials: list[Trial]) -> str:
    lat = [t.past_deadline_s for t in trials if t.past_deadline_s is not None]
    rec = [t.recover_s for t in trials if t.recover_s is not None]
    lost = [t.lost for t in trials if t.lost is not None]
    corrupt = [t.corrupt_loaded for t in trials if t.corrupt_loaded is not None]
    stops = f"{len(lat)}/{len(trials)}" if name in WATCHDOG_FAULTS else "-"
    recover = f"{np.median(rec):.1f}" if rec else "-"
    return (f"| {name} | {len(trials)} | {stops} | {ms(lat, 50)} | {ms(lat, 99)} | "
            f"{ms(lat, 100)} | {sum(t.bad_motions for t in trials)} | "
            f"{sum(t.crashes for t in trials)} | {sum(lost) if lost else '-'} | "
            f"{sum(corrupt) if corrupt else '-'} | {recover} |")


HEADER = ("| fault | n | stops | past deadline p50 ms | p99 ms | max ms | motions that should "
          "have been stops | crashes | transitions lost | corrupt files loaded | recover "
          "p50 s |\n|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="repetitions of each fault")
    parser.add_argument("--load", action="store_true", help="two CPU burners beside the stack")
    parser.add_argument("--quick", action="store_true", help="n=2, a 1 s flood")
    parser.add_argument("--only", default="", help="comma-separated faults (default: all)")
    parser.add_argument("--rate", type=float, default=5.0, help="camera frames per second")
    parser.add_argument("--config", default=None, help="default: the node tests' tiny stack")
    parser.add_argument("--flood-s", type=float, default=3.0)
    parser.add_argument("--player", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.player:
        run_player(ns.config, ns.rate)
        return
    # A private DDS domain (as scripts/test.sh): another stack on the machine must not answer.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randrange(100, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    n = 2 if ns.quick else ns.n
    flood_s = 1.0 if ns.quick else ns.flood_s
    faults = ns.only.split(",") if ns.only else list(FAULTS)
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise SystemExit(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
    work = Path(tempfile.mkdtemp(prefix="safari_faults_"))
    if ns.config:
        config = Path(ns.config)
    else:
        from nodes.stack_support import tiny_stack_config

        config = tiny_stack_config(work)
    stack = Stack(config, work, ns.rate)
    print(f"starting the stack (logs in {work / 'logs'}) ...", flush=True)
    stack.start()
    obs = Observer(stack.cfg)
    burners = None
    results: dict[str, list[Trial]] = {}
    try:
        bench = Bench(stack, obs, flood_s)
        if not bench.flowing(300):
            raise SystemExit(f"the stack never answered; logs in {work / 'logs'}")
        obs.learn_mode()
        if ns.load:
            burners = Burners(2)
        runs: dict[str, Callable[[int], Trial]] = {
            "kill_policy": lambda i: bench.kill("policy_node"),
            "kill_perception": lambda i: bench.kill("perception_node"),
            "kill_camera": lambda i: bench.kill("robot_player"),
            "sigstop_policy": lambda i: bench.sigstop("policy_node"),
            "sigstop_perception": lambda i: bench.sigstop("perception_node"),
            "joint_states_stop": lambda i: bench.silence(signal.SIGUSR1),
            "camera_stop": lambda i: bench.silence(signal.SIGUSR2),
            "kill_learner": lambda i: bench.learner_crash(None),
            # 64 KiB: the tiny model's replay bag and its journal pass it within a trial
            "learner_disk_full": lambda i: bench.learner_crash(64 * 1024),
            "bad_checkpoint": bench.bad_checkpoint,
            "malformed_input": lambda i: bench.malformed_input(),
        }
        for name in faults:
            results[name] = []
            for i in range(n):
                trial = runs[name](i)
                results[name].append(trial)
                lat = (f"{trial.past_deadline_s * 1e3:6.0f} ms past deadline (sent "
                       f"{trial.sent_past_deadline_s * 1e3:.0f} ms)"
                       if trial.past_deadline_s is not None else "")
                print(f"{name} {i + 1}/{n}: {lat} bad {trial.bad_motions} crashes "
                      f"{trial.crashes} lost {trial.lost} corrupt {trial.corrupt_loaded} "
                      f"recover {trial.recover_s} {'; '.join(trial.notes)}", flush=True)
                for node in bench.down():  # a crashed node is counted, then restarted
                    print(f"restarting {node} (down)", flush=True)
                    stack.restart(node)
                    bench.flowing()
    finally:
        if burners:
            burners.stop()
        obs.close()
        stack.stop()
    print(f"\nfaults, n={n} each, {'two CPU burners beside the stack' if ns.load else 'idle'}, "
          f"{os.cpu_count()} CPUs, camera {ns.rate} Hz, watchdog {bench.watchdog_s} s; "
          f"logs in {work / 'logs'}")
    print(HEADER)
    for name, trials in results.items():
        print(row(name, trials))
    for name, trials in results.items():
        sent = [t.sent_past_deadline_s for t in trials if t.sent_past_deadline_s is not None]
        if sent:  # the stop's own stamp: the shield's part of the latency, without delivery
            print(f"{name}: stop sent past the deadline p50 {ms(sent, 50)} ms, p99 "
                  f"{ms(sent, 99)} ms, max {ms(sent, 100)} ms")


if __name__ == "__main__":
    main()
