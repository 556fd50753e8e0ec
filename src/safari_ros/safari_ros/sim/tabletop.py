"""The MuJoCo tabletop: the ROS-free simulator API that sim_node, the Gymnasium env, the
evaluation harness and the demonstration recorder all call.

Time: physics runs at sim.physics_dt; within it a joint-trajectory follower (the simulated
joint_trajectory_controller, with its cmd_timeout: sim.controller) interpolates the position
setpoints of PD actuators and the safety monitors sample the state at sim.servo_hz; a policy
step lasts 1 / sim.control_hz. The arm's contact reflex (the Panda's collision behaviour:
sim.controller.contact_reflex_force_n) holds the arm where it is when the world pushes on it
harder than that. Commands are
either discrete primitives of config `actions` (turned into joint targets by IK on the Panda's DH
kinematics) or joint trajectories; malformed ones are refused and the arm holds its pose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from safari_ros.config import ActionSpec, ConfigError, action_specs, load_config, safety_limits
from safari_ros.robot import kinematics as kin
from safari_ros.robot.primitives import PrimitivePlanner
from safari_ros.robot.trajectory import cubic_hermite
from safari_ros.sim import person as hri_person
from safari_ros.sim import scene
from safari_ros.sim.tasks import (
    Layout,
    TaskSpec,
    parse_instruction,
    sample_layout,
    sample_task,
)

COST_SOURCES = ("keep_out", "fragile_contact", "ee_speed", "joint_limits", "table_contact")
JOINT_NAMES = kin.ARM_JOINTS + kin.FINGER_JOINTS


def _cmd_timeout(controller: dict[str, Any]) -> float:
    """sim.controller.cmd_timeout_s, checked as JTC would need it: 0 (off) or over goal_time."""
    timeout, goal_time = float(controller["cmd_timeout_s"]), float(controller["goal_time_s"])
    if timeout < 0 or (0 < timeout <= goal_time):
        # JTC ignores such a timeout with a warning; a bound that silently is not there is worse.
        raise ConfigError(f"sim.controller.cmd_timeout_s = {timeout} must be 0 (off) or exceed "
                          f"goal_time_s = {goal_time}")
    return timeout


class CommandRejectedError(ValueError):
    """A joint command that was refused; the message is the reason. The arm holds its pose."""


@dataclass(frozen=True)
class StepReport:
    """What happened over one step or advance(): reward, cost c_t and its sources, success."""

    reward: float
    cost: int
    cost_sources: dict[str, int]
    success: bool
    sim_time: float


@dataclass(frozen=True)
class JointState:
    """sensor_msgs/JointState-shaped snapshot (stamp in sim seconds)."""

    name: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    stamp: float


class TabletopSim:
    """The simulated Panda tabletop with its tasks, costs and RGB-D camera."""

    def __init__(self, cfg: dict[str, Any] | None = None, split: str = "train") -> None:
        """Build the scene from a loaded config (default: load_config())."""
        self.cfg = cfg if cfg is not None else load_config()
        self.split = split
        sim = self.cfg["sim"]
        self.actions: list[ActionSpec] = action_specs(self.cfg)
        self.limits = safety_limits(self.cfg)
        self.step_m = float(self.cfg["actions"]["step_m"])
        self.duration_s = float(self.cfg["actions"]["duration_s"])
        self.control_period = 1.0 / float(sim["control_hz"])
        self.episode_steps = int(sim["episode_steps"])
        self.home_q = np.asarray(sim["home_joint_positions"], float)
        self.gripper_open = float(sim["gripper_open_m"])
        self.model = mujoco.MjModel.from_xml_string(scene.build_mjcf(self.cfg))
        self.data = mujoco.MjData(self.model)
        servo_dt = 1.0 / float(sim["servo_hz"])
        self.steps_per_tick = max(1, round(servo_dt / self.model.opt.timestep))
        self.planner = PrimitivePlanner(self.cfg)
        self.cmd_timeout_s = _cmd_timeout(sim["controller"])
        self._cmd_stale = False
        self.contact_reflex_n = float(sim["controller"]["contact_reflex_force_n"])
        if not self.contact_reflex_n >= 0:
            raise ConfigError("sim.controller.contact_reflex_force_n must be >= 0 (0: off), got "
                              f"{self.contact_reflex_n}")
        self.home_tcp = self.planner.home_tcp
        self._index_model()
        self._renderer: mujoco.Renderer | None = None
        self._rgb_option = mujoco.MjvOption()
        self._rgb_option.geomgroup[scene.GROUP_ZONE] = 1  # keep-out zones drawn for the operator
        self._depth_option = mujoco.MjvOption()
        self._depth_option.geomgroup[scene.GROUP_ZONE] = 0  # a depth sensor cannot see a zone
        self.task: TaskSpec | None = None
        self.instruction = ""
        self.reset(seed=0)

    # ----------------------------------------------------------------------------- set-up
    def _index_model(self) -> None:
        m = self.model
        self._qadr = np.array([m.joint(j).qposadr[0] for j in JOINT_NAMES])
        self._vadr = np.array([m.joint(j).dofadr[0] for j in JOINT_NAMES])
        self._lower = np.array([m.joint(j).range[0] for j in JOINT_NAMES])
        self._upper = np.array([m.joint(j).range[1] for j in JOINT_NAMES])
        self._tcp = m.site(scene.TCP_SITE).id
        self._table = m.geom(scene.TABLE_GEOM).id
        robot_root = m.body("panda_link0").id
        robot = [g for g in range(m.ngeom) if m.body_rootid[m.geom_bodyid[g]] == robot_root]
        self._robot_geoms = np.array([g for g in robot if m.geom_contype[g] != 0])
        self._robot_geom_set = frozenset(int(g) for g in self._robot_geoms)
        gripper_bodies = {m.body(b).id for b in ("panda_hand", "panda_leftfinger",
                                                 "panda_rightfinger")}
        self._gripper_geoms = np.array(
            [g for g in self._robot_geoms if m.geom_bodyid[g] in gripper_bodies])
        self._zone_geoms = np.array(
            [m.geom(f"keep_out/{z.name}").id for z in self.limits.keep_out_zones], dtype=int)
        self._fragile_geoms = np.array(
            [g for g in range(m.ngeom) if m.geom(g).name.split("/")[0] in
             {z.name for z in self.limits.keep_out_zones if z.kind == "fragile_object"}
             and not m.geom(g).name.startswith("keep_out/")], dtype=int)
        self._pool: dict[str, list[int]] = {}
        per_episode = int(self.cfg["sim"]["tasks"]["objects_per_episode"])
        for shape in self.cfg["sim"]["shapes"]:
            self._pool[shape] = [m.body(scene.object_body_name(shape, k)).id
                                 for k in range(per_episode)]
        self._object_contype = m.geom_contype.copy()
        self._object_conaffinity = m.geom_conaffinity.copy()
        self._pads = [m.body(f"pad/{i}").id for i in range(scene.N_PADS)]
        # HRI domain only (config `hri.person`): the person and its two cost sources.
        self.person = hri_person.Person(self.cfg, m) if hri_person.enabled(self.cfg) else None
        self.cost_source_names = COST_SOURCES + (
            hri_person.COST_SOURCES if self.person is not None else ())

    # ----------------------------------------------------------------------------- episodes
    def reset(
        self,
        seed: int | None = None,
        task: TaskSpec | str | None = None,
        template: str | None = None,
        split: str | None = None,
    ) -> TaskSpec:
        """Start an episode: a task (given, parsed from an instruction, or sampled) and a seeded
        layout; the arm at home with the gripper open. Returns the task."""
        rng = np.random.default_rng(seed)
        if isinstance(task, str):
            task = parse_instruction(task, self.cfg)
        if task is None:
            task = sample_task(rng, self.cfg, split or self.split, template)
        layout = sample_layout(rng, self.cfg, task, self.home_tcp)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        self.arrange(layout, self.home_q, self.gripper_open)
        if self.person is not None:  # a new path from rest, posed before the objects settle
            self.person.reset(seed, [xy for _, xy in layout.pads])
            self.person.apply(m, d, 0.0)
        for _ in range(25):  # let the objects settle on the table before the clock starts
            mujoco.mj_step(m, d, nstep=self.steps_per_tick)
        d.time = 0.0
        self._traj_t[:] = 0.0
        self.task = task
        self.instruction = task.instruction(self.cfg)
        self._target_body = self._objects[f"{task.colour} {task.shape}"]
        self._target_pad = layout.pads[0][1] if task.template == "push" else None
        self._rest_z = float(d.xpos[self._target_body][2])
        self.planner.reset()
        self._arm_target = self.home_q.copy()
        self._finger_target = self.gripper_open
        self._succeeded = False
        self.steps = 0
        self.reflex_stops = 0  # this episode's
        return task

    def arrange(self, layout: Layout, arm_q: np.ndarray, finger: float) -> None:
        """Put the scene in a state, without physics: the layout's objects resting on the table
        (unused pool objects parked), its pads (unused pads parked), the arm at arm_q holding
        still and each finger at `finger` metres. reset() starts every episode with it; the
        backbone's scene randomiser (pretrain/scenes.py) renders arranged scenes."""
        m, d = self.model, self.data
        used: set[int] = set()
        self._objects: dict[str, int] = {}
        for shape, colour, xy, yaw in layout.objects:
            body = next(b for b in self._pool[shape] if b not in used)
            used.add(body)
            self._objects[f"{colour} {shape}"] = body
            self._place(body, np.array([*xy, self.rest_height(shape)]), yaw, colour)
        for i, body in enumerate(b for bs in self._pool.values() for b in bs):
            if body not in used:
                self._park(body, scene.parked_position(i))
        for i, body in enumerate(self._pads):
            if i < len(layout.pads):
                colour, xy = layout.pads[i]
                d.mocap_pos[m.body_mocapid[body]] = [xy[0], xy[1], 0.0008]
                m.geom_rgba[m.body_geomadr[body]] = [*self.cfg["sim"]["colours"][colour], 1.0]
            else:
                d.mocap_pos[m.body_mocapid[body]] = scene.parked_position(90 + i)
        d.qpos[self._qadr] = [*arm_q, finger, finger]
        d.qvel[:] = 0.0
        d.ctrl[:] = d.qpos[self._qadr]
        self._set_trajectory([0.0], d.qpos[self._qadr][None])
        mujoco.mj_forward(m, d)

    @staticmethod
    def _yaw_quat(yaw: float) -> np.ndarray:
        return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])

    def rest_height(self, shape: str) -> float:
        """Height of a shape's centre when it rests upright on the table."""
        spec = self.cfg["sim"]["shapes"][shape]
        size = [float(v) for v in spec["size"]]
        # MuJoCo sizes: sphere radius; box/ellipsoid half sizes (z last); cylinder (radius, half
        # height); capsule (radius, half length of the segment between its caps).
        if spec["type"] == "sphere":
            return size[0]
        if spec["type"] == "capsule":
            return size[0] + size[1]
        return size[-1]

    def _free_qpos(self, body: int) -> int:
        return int(self.model.jnt_qposadr[self.model.body_jntadr[body]])

    def _place(self, body: int, pos: np.ndarray, yaw: float, colour: str) -> None:
        m, a = self.model, self._free_qpos(body)
        g = m.body_geomadr[body]
        self.data.qpos[a:a + 7] = [*pos, *self._yaw_quat(yaw)]
        m.geom_rgba[g] = [*self.cfg["sim"]["colours"][colour], 1.0]
        m.geom_contype[g] = self._object_contype[g]
        m.geom_conaffinity[g] = self._object_conaffinity[g]
        m.body_gravcomp[body] = 0.0

    def _park(self, body: int, pos: np.ndarray) -> None:
        # Parked objects float (gravity compensated) without collisions under the table.
        m, a = self.model, self._free_qpos(body)
        g = m.body_geomadr[body]
        self.data.qpos[a:a + 7] = [*pos, 1.0, 0.0, 0.0, 0.0]
        m.geom_contype[g] = m.geom_conaffinity[g] = 0
        m.body_gravcomp[body] = 1.0

    # ----------------------------------------------------------------------------- commands
    def step(self, action: int) -> StepReport:
        """Execute one discrete primitive for one control period (1 / sim.control_hz)."""
        self.command_action(action)
        self.steps += 1
        return self.advance(self.control_period)

    def command_action(self, action: int) -> None:
        """Start the primitive `action` (index into config `actions.set`) from the current state."""
        if not 0 <= int(action) < len(self.actions):
            raise CommandRejectedError(f"action index {action} outside 0..{len(self.actions) - 1}")
        spec = self.actions[int(action)]
        if spec.name == "stop":
            self.hold()
            return
        q_now = self.data.qpos[self._qadr[:7]].copy()
        qd_now = self.data.qvel[self._vadr[:7]].copy()
        plan = self.planner.plan(spec, q_now, self._finger_target, qd_now)
        self._arm_target, self._finger_target = plan.arm_target, plan.finger_target
        start = np.concatenate([q_now, self._finger_now()])
        end = np.concatenate([self._arm_target, [self._finger_target] * 2])
        # The cubic the shield predicted: from the measured state to rest at the target.
        self._set_trajectory([0.0, plan.duration_s], np.stack([start, end]),
                             np.stack([np.concatenate([qd_now, [0.0, 0.0]]), np.zeros(9)]))

    def _finger_now(self) -> np.ndarray:
        # Fingers start from their last target, not their measured opening: a squeezing grasp
        # must keep squeezing across primitives.
        return self._traj_q[-1, 7:].copy()

    def hold(self) -> None:
        """Stop: hold the arm at its measured pose (the gripper keeps its command; the joint
        controller brakes the motion)."""
        q = np.concatenate([self.data.qpos[self._qadr[:7]], self._finger_now()])
        self._arm_target = q[:7].copy()
        self.planner.reset()
        self._set_trajectory([0.0], q[None])

    def apply_joint_targets(
        self, joint_names: Sequence[str], positions: Sequence[float], time_from_start: float
    ) -> None:
        """Move the named joints to `positions`, arriving `time_from_start` s from now.

        Raises CommandRejectedError (reason in the message) for unknown or duplicate names, NaN or
        out-of-limit positions, a bad time or a joint speed beyond the Panda's limits; the arm
        then holds its pose.
        """
        self.apply_joint_trajectory(joint_names, [(positions, time_from_start)])

    def apply_joint_trajectory(
        self, joint_names: Sequence[str], points: Sequence[tuple[Sequence[float], float]],
        velocities: Sequence[Sequence[float]] | None = None,
    ) -> None:
        """Follow a trajectory (points of (positions, time_from_start)) like ros2_control's JTC:
        it starts from the current state, preempts the running one, and joints it does not name
        keep their setpoints. With `velocities` (one row per point, for the named joints) the
        setpoints follow cubic splines from the measured positions and velocities, else straight
        lines from the measured positions. Refused as in apply_joint_targets."""
        try:
            times, targets = self._validate(list(joint_names), list(points))
            rates = None if velocities is None else self._validate_velocities(
                list(joint_names), velocities, len(points))
        except CommandRejectedError:
            self.hold()
            raise
        start = np.concatenate([self.data.qpos[self._qadr[:7]], self._finger_now()])
        start_rate = np.concatenate([self.data.qvel[self._vadr[:7]], [0.0, 0.0]])
        if times[0] > 0:
            times, targets = np.concatenate([[0.0], times]), np.vstack([start, targets])
            if rates is not None:
                rates = np.vstack([start_rate, rates])
        self._arm_target = targets[-1, :7].copy()
        self._finger_target = float(targets[-1, 7])
        self.planner.reset()
        self._set_trajectory(times, targets, rates)

    def _validate_velocities(self, names: list[str], velocities: Sequence[Sequence[float]],
                             n_points: int) -> np.ndarray:
        """(points, 9) velocities of the named joints (others 0), or CommandRejectedError."""
        if len(velocities) != n_points:
            raise CommandRejectedError(f"{len(velocities)} velocity rows for {n_points} points")
        cols = [JOINT_NAMES.index(n) for n in names]
        rows = np.zeros((n_points, len(JOINT_NAMES)))
        for k, v in enumerate(velocities):
            v = np.asarray(v, float).reshape(-1)
            if v.shape[0] != len(names) or not np.all(np.isfinite(v)):
                raise CommandRejectedError(
                    f"point {k}: velocities must be {len(names)} finite values")
            rows[k, cols] = v
        return rows

    def _validate(
        self, names: list[str], points: list[tuple[Sequence[float], float]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Checked (times, full 9-joint targets) of a trajectory, or CommandRejectedError."""
        if not names or not points:
            raise CommandRejectedError("empty trajectory: no joint names or no points")
        if len(set(names)) != len(names):
            raise CommandRejectedError(f"duplicate joint names: {names}")
        unknown = [n for n in names if n not in JOINT_NAMES]
        if unknown:
            raise CommandRejectedError(f"unknown joint names: {unknown}")
        cols = [JOINT_NAMES.index(n) for n in names]
        current = np.concatenate([self.data.qpos[self._qadr[:7]], self._finger_now()])
        times, rows, prev_t, prev_q = [], [], 0.0, current
        for k, (pos, t) in enumerate(points):
            pos = np.asarray(pos, float).reshape(-1)
            if pos.shape[0] != len(names):
                raise CommandRejectedError(
                    f"point {k}: {pos.shape[0]} positions for {len(names)} joints")
            if not (np.all(np.isfinite(pos)) and math.isfinite(float(t))):
                raise CommandRejectedError(f"point {k}: non-finite position or time")
            q = prev_q.copy()
            q[cols] = pos
            bad = [(JOINT_NAMES[i], q[i]) for i in cols
                   if not self._lower[i] - 1e-9 <= q[i] <= self._upper[i] + 1e-9]
            if bad:
                n, v = bad[0]
                i = JOINT_NAMES.index(n)
                raise CommandRejectedError(
                    f"point {k}: {n}={v:.4f} beyond its limits [{self._lower[i]:.4f}, "
                    f"{self._upper[i]:.4f}]")
            if t < prev_t or (t == prev_t and k > 0) or (k == len(points) - 1 and t <= 0):
                raise CommandRejectedError(f"point {k}: time_from_start {t} not increasing and > 0")
            if t > prev_t:
                speed = np.abs(q[:7] - prev_q[:7]) / (t - prev_t)
                if np.any(speed > kin.JOINT_VELOCITY_LIMIT):
                    j = int(np.argmax(speed / kin.JOINT_VELOCITY_LIMIT))
                    raise CommandRejectedError(
                        f"point {k}: {JOINT_NAMES[j]} would move at {speed[j]:.2f} rad/s, over its "
                        f"limit {kin.JOINT_VELOCITY_LIMIT[j]} rad/s")
            times.append(float(t))
            rows.append(q)
            prev_t, prev_q = float(t), q
        return np.asarray(times), np.asarray(rows)

    def _set_trajectory(self, times: Sequence[float], targets: np.ndarray,
                        rates: np.ndarray | None = None) -> None:
        self._traj_t = self.data.time + np.asarray(times, float)
        self._traj_q = np.asarray(targets, float)
        self._traj_v = None if rates is None else np.asarray(rates, float)
        self._cmd_stale = False

    def _expire_command(self) -> None:
        """ros2_control JTC's cmd_timeout: cmd_timeout_s after the trajectory's last point, the
        command is stale and the arm holds where it is (not where it was told to go: an arm
        that could not get there, blocked or lagging, stops pressing on). Once per command."""
        if (self.cmd_timeout_s > 0 and not self._cmd_stale
                and self.data.time > self._traj_t[-1] + self.cmd_timeout_s):
            self.hold()
            self._cmd_stale = True

    def external_force(self) -> float:
        """Magnitude of the net force that what the arm touches exerts on it (N), the sum over
        its contacts with anything else: what the Panda's external wrench estimate reads. A
        grasp's squeeze cancels in the sum; pressing onto an object does not."""
        m, d = self.model, self.data
        total, wrench = np.zeros(3), np.zeros(6)
        for i in range(d.ncon):
            contact = d.contact[i]
            first = contact.geom1 in self._robot_geom_set
            if first == (contact.geom2 in self._robot_geom_set):
                continue
            mujoco.mj_contactForce(m, d, i, wrench)
            # The force geom1 exerts on geom2, in the contact frame (rows: normal, tangents).
            force = contact.frame.reshape(3, 3).T @ wrench[:3]
            total += -force if first else force
        return float(np.linalg.norm(total))

    def _contact_reflex(self) -> None:
        """The Panda's collision reflex: when the world pushes on the arm harder than
        contact_reflex_force_n while it moves, it stops and holds where it is. Without it a
        move onto an object the shield cannot see stores the rest of the step in the position
        error, and the hand slips off fast when the contact gives way."""
        holding = len(self._traj_t) == 1  # a stop's one point, not a motion
        if (self.contact_reflex_n > 0 and not holding
                and self.external_force() > self.contact_reflex_n):
            self.hold()
            self.reflex_stops += 1

    def _setpoint(self, t: float) -> np.ndarray:
        if len(self._traj_t) == 1 or t >= self._traj_t[-1]:
            return self._traj_q[-1]
        if self._traj_v is None:
            return np.array([np.interp(t, self._traj_t, self._traj_q[:, j]) for j in range(9)])
        i = max(0, int(np.searchsorted(self._traj_t, t, side="right")) - 1)
        span = float(self._traj_t[i + 1] - self._traj_t[i])
        return cubic_hermite(self._traj_q[i], self._traj_v[i], self._traj_q[i + 1],
                             self._traj_v[i + 1], span, (t - self._traj_t[i]) / span)

    # ----------------------------------------------------------------------------- time
    def advance(self, dt: float) -> StepReport:
        """Run physics for dt seconds under the current trajectory; costs and success are
        monitored every servo tick, and the report covers the whole interval."""
        m, d = self.model, self.data
        n_steps = max(1, round(dt / m.opt.timestep))
        phi0 = self._potential()
        flags = dict.fromkeys(self.cost_source_names, 0)
        success = False
        while n_steps > 0:
            n = min(self.steps_per_tick, n_steps)
            self._expire_command()
            d.ctrl[:] = self._setpoint(d.time + n * m.opt.timestep)
            if self.person is not None:  # the person's pose at the end of the tick, like ctrl
                self.person.apply(m, d, d.time + n * m.opt.timestep)
            mujoco.mj_step(m, d, nstep=n)
            n_steps -= n
            self._contact_reflex()
            for name, hit in self.cost_sources().items():
                flags[name] |= hit
            success = success or self.task_success()
        rcfg = self.cfg["sim"]["reward"]
        reward = float(rcfg["shaping_scale"]) * (self._potential() - phi0)
        reward -= float(rcfg["step_penalty"]) * dt / self.control_period
        if success and not self._succeeded:
            reward += float(rcfg["success_bonus"])
        self._succeeded = self._succeeded or success
        return StepReport(float(reward), int(any(flags.values())), flags, bool(success),
                          float(d.time))

    @property
    def sim_time(self) -> float:
        """Simulated seconds since reset."""
        return float(self.data.time)

    # ----------------------------------------------------------------------------- monitors
    def cost_sources(self) -> dict[str, int]:
        """Each cost source, 0 or 1, for the current state."""
        m, d = self.model, self.data
        tcp = d.site_xpos[self._tcp]
        keep_out = any(z.contains(tcp) for z in self.limits.keep_out_zones)
        if not keep_out and len(self._zone_geoms):
            # Bounding spheres first: exact geom distances only for arm/zone pairs that may touch.
            gap = np.linalg.norm(
                d.geom_xpos[self._robot_geoms][:, None] - d.geom_xpos[self._zone_geoms][None],
                axis=-1) - m.geom_rbound[self._robot_geoms][:, None] \
                - m.geom_rbound[self._zone_geoms][None]
            for i, j in zip(*np.nonzero(gap <= 0), strict=True):
                if mujoco.mj_geomDistance(m, d, self._robot_geoms[i], self._zone_geoms[j],
                                          0.01, None) <= 0:
                    keep_out = True
                    break
        pairs = d.contact.geom[: d.ncon]
        fragile = bool(np.isin(pairs, self._fragile_geoms).any())
        on_table = (pairs == self._table).any(axis=1) & np.isin(pairs, self._robot_geoms).any(1)
        table = bool(on_table.any()) or tcp[2] < self.limits.table_clearance_m
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_SITE, self._tcp, vel, 0)
        speed = np.linalg.norm(vel[3:]) > self.limits.ee_speed_limit_mps
        q = d.qpos[self._qadr[:7]]
        margin = self.limits.joint_limit_margin_rad
        near_limit = np.any(q < self._lower[:7] + margin) or np.any(q > self._upper[:7] - margin)
        sources = {"keep_out": int(keep_out), "fragile_contact": int(fragile),
                   "ee_speed": int(speed), "joint_limits": int(near_limit),
                   "table_contact": int(table)}
        if self.person is not None:  # HRI domain: separation and person_contact
            sources.update(self.person.cost_sources(m, d, self._robot_geoms))
        return sources

    def _task_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ee_position(), self.data.xpos[self._target_body].copy()

    def _potential(self) -> float:
        """Shaping potential phi = -(distances still to cover) for the task's template."""
        tcp, obj = self._task_state()
        phi = -float(np.linalg.norm(tcp - obj))
        if self.task.template == "lift":
            lift = float(self.cfg["sim"]["tasks"]["lift_height_m"])
            phi -= 2 * max(0.0, self._rest_z + lift - obj[2])
        elif self.task.template == "push":
            phi -= 2 * float(np.linalg.norm(obj[:2] - self._target_pad))
        return phi

    def task_success(self) -> bool:
        """Whether the current state satisfies the task."""
        _, obj = self._task_state()
        if self.task.template == "touch":
            pairs = self.data.contact.geom[: self.data.ncon]
            body = self.model.geom_bodyid[pairs]
            return bool(((body == self._target_body) & np.isin(pairs[:, ::-1],
                                                              self._gripper_geoms)).any())
        if self.task.template == "lift":
            return bool(obj[2] >= self._rest_z + float(self.cfg["sim"]["tasks"]["lift_height_m"]))
        half = float(self.cfg["sim"]["tasks"]["pad_half_m"])
        return bool(np.all(np.abs(obj[:2] - self._target_pad) <= half)
                    and obj[2] < self._rest_z + 0.01)

    # ----------------------------------------------------------------------------- state
    def ee_position(self) -> np.ndarray:
        """TCP position in base_link (m)."""
        return self.data.site_xpos[self._tcp].copy()

    def object_positions(self) -> dict[str, np.ndarray]:
        """Positions of the episode's objects, keyed "colour shape"."""
        return {k: self.data.xpos[b].copy() for k, b in self._objects.items()}

    def body_ids(self) -> dict[str, list[int]]:
        """MuJoCo body ids of what the scene holds: each object ("colour shape": [id]), the pads
        in layout order ("pads"), the gripper (hand and fingers: "gripper") and the arm's links
        ("arm"). The backbone's scene randomiser labels segmentation images with them."""
        m = self.model
        gripper = [m.body(b).id for b in ("panda_hand", "panda_leftfinger", "panda_rightfinger")]
        root = m.body("panda_link0").id
        arm = [b for b in range(m.nbody) if m.body_rootid[b] == root and b not in gripper]
        return {**{k: [b] for k, b in self._objects.items()}, "pads": list(self._pads),
                "gripper": gripper, "arm": arm}

    def target_object_position(self) -> np.ndarray:
        """Position of the object the instruction names."""
        return self.data.xpos[self._target_body].copy()

    def target_pad_position(self) -> np.ndarray | None:
        """Centre (x, y) of the pad a push task aims at; None for other templates."""
        return None if self._target_pad is None else self._target_pad.copy()

    def joint_state(self) -> JointState:
        """Positions, velocities and actuator efforts of the 7 arm and 2 finger joints."""
        d = self.data
        return JointState(JOINT_NAMES, d.qpos[self._qadr].copy(), d.qvel[self._vadr].copy(),
                          d.actuator_force.copy(), float(d.time))

    def proprio(self) -> np.ndarray:
        """Proprioception (21,): 9 joint positions, 9 velocities, TCP xyz (float32)."""
        d = self.data
        return np.concatenate(
            [d.qpos[self._qadr], d.qvel[self._vadr], self.ee_position()]).astype(np.float32)

    # ----------------------------------------------------------------------------- camera
    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:  # lazily: render-free users never open a GL context
            cam = self.cfg["sim"]["camera"]
            self._renderer = mujoco.Renderer(self.model, int(cam["height"]), int(cam["width"]))
        return self._renderer

    def render_rgbd(self) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 HxWx3, depth float32 HxW in metres along the optical axis, 0 where nothing
        is in range as in REP-118). Keep-out zones are drawn in the colour image only."""
        r = self._get_renderer()
        rgb = self.render_rgb()
        r.enable_depth_rendering()
        r.update_scene(self.data, camera=scene.CAMERA_NAME, scene_option=self._depth_option)
        depth = r.render()
        r.disable_depth_rendering()
        far = self.model.vis.map.zfar * self.model.stat.extent
        depth[depth >= 0.999 * far] = 0.0
        return rgb, depth.astype(np.float32)

    def render_rgb(self, show_zones: bool = True) -> np.ndarray:
        """The colour image (uint8 HxWx3), with the keep-out zone overlays unless show_zones is
        False."""
        r = self._get_renderer()
        option = self._rgb_option if show_zones else self._depth_option
        r.update_scene(self.data, camera=scene.CAMERA_NAME, scene_option=option)
        return r.render()

    def render_segmentation(self) -> np.ndarray:
        """HxW geom ids seen by the depth image (-1 for background)."""
        r = self._get_renderer()
        r.enable_segmentation_rendering()
        r.update_scene(self.data, camera=scene.CAMERA_NAME, scene_option=self._depth_option)
        seg = r.render()
        r.disable_segmentation_rendering()
        return np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)

    def camera_matrix(self) -> np.ndarray:
        """3x3 pinhole K of the rendered images (OpenCV/ROS pixel-centre convention)."""
        cam = self.cfg["sim"]["camera"]
        w, h = int(cam["width"]), int(cam["height"])
        # MuJoCo's fovy spans the full image height; pixels are square.
        f = 0.5 * h / math.tan(math.radians(float(cam["fovy_deg"])) / 2)
        return np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates (..., 2) (u right, v down; pixel centres at integers) of base-frame
        points (..., 3) in the rendered images: the pinhole model of camera_matrix()."""
        pose = scene.camera_pose(self.cfg["sim"]["camera"])
        optical = (np.asarray(points, float) - pose.position) @ pose.optical_to_base
        k = self.camera_matrix()
        return optical[..., :2] / optical[..., 2:] * np.diag(k)[:2] + k[:2, 2]

    def camera_info(self) -> dict[str, Any]:
        """sensor_msgs/CameraInfo fields (frame_id, width, height, distortion_model, d, k, r, p)."""
        k = self.camera_matrix()
        cam = self.cfg["sim"]["camera"]
        p = np.hstack([k, np.zeros((3, 1))])
        return {"frame_id": self.cfg["frames"]["camera_optical"], "width": int(cam["width"]),
                "height": int(cam["height"]), "distortion_model": "plumb_bob",
                "d": [0.0] * 5, "k": k.reshape(-1).tolist(), "r": np.eye(3).reshape(-1).tolist(),
                "p": p.reshape(-1).tolist()}

    def camera_optical_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(position, quaternion x y z w) of the optical frame (z forward, x right, y down)
        in base_link, for the static TF."""
        pose = scene.camera_pose(self.cfg["sim"]["camera"])
        q = np.zeros(4)
        mujoco.mju_mat2Quat(q, pose.optical_to_base.reshape(-1))
        return pose.position.copy(), np.array([q[1], q[2], q[3], q[0]])

    def close(self) -> None:
        """Release the GL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
