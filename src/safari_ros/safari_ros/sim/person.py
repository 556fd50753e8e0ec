"""A person at the tabletop (HRI domain, config `hri.person`): a forearm and a hand, moving.

Two capsules on mocap bodies (visible in colour and depth, colliding only with the arm) lie on the
line from a fixed shoulder to the hand centre H, which follows a piecewise-linear path at a
constant speed per segment: scripted behaviours (reach to a pad, offer a hand, wander, withdraw)
or a seeded random sequence of them. With u = (H - S) / |H - S|:

    wrist W = H - u * hand/2,  elbow E = W - u * forearm,  fingertips F = W + u * hand.

Keeping |H - S| >= hand/2 + forearm (hri.person.reach_m) makes every keypoint move no faster
than the hand centre, so the path's speeds bound the person's (ISO 13855's 1.6 / 2.0 m/s).
Nothing here imports the scene or the simulator: sim/scene.py adds person_xml() and
sim/tabletop.py drives a Person only when the config has the section.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from safari_ros.config import ConfigError
from safari_ros.safety.ssm import SSMParams, protective_distance, ssm_params

FOREARM = "person/forearm"  # body and geom names
HAND = "person/hand"
KEYPOINTS = ("wrist", "hand", "elbow")
COST_SOURCES = ("separation", "person_contact")
BEHAVIOURS = ("reach_to_pad", "offer", "wander", "withdraw")
WANDER_WAYPOINTS = 3
# Person geoms collide with contype-2 geoms only: the arm's (scene.py), not objects or the table.
PERSON_CONAFFINITY = 2


def enabled(cfg: dict[str, Any]) -> bool:
    """Whether the config asks for a person (the HRI domain); the tabletop has none."""
    return bool((cfg.get("hri") or {}).get("person"))


@dataclass(frozen=True)
class PersonSpec:
    """Typed view of config `hri.person` (metres, seconds, m/s)."""

    shoulder: np.ndarray
    forearm_length: float
    forearm_radius: float
    hand_length: float
    hand_radius: float
    reach: tuple[float, float]
    rest: np.ndarray
    region_min: np.ndarray
    region_max: np.ndarray
    pad_height: float
    reach_speed: float
    move_speed: tuple[float, float]
    withdraw_speed: float
    hold_s: tuple[float, float]
    behaviours: dict[str, float]
    seed: int


def person_spec(cfg: dict[str, Any]) -> PersonSpec:
    """The checked person spec; ConfigError when it is incoherent with itself or with hri.ssm."""
    p = cfg["hri"]["person"]
    sp = p["speeds"]
    spec = PersonSpec(
        shoulder=np.asarray(p["shoulder"], float),
        forearm_length=float(p["forearm"]["length_m"]),
        forearm_radius=float(p["forearm"]["radius_m"]),
        hand_length=float(p["hand"]["length_m"]),
        hand_radius=float(p["hand"]["radius_m"]),
        reach=(float(p["reach_m"][0]), float(p["reach_m"][1])),
        rest=np.asarray(p["rest"], float),
        region_min=np.asarray(p["region"]["min"], float),
        region_max=np.asarray(p["region"]["max"], float),
        pad_height=float(p["pad_height_m"]),
        reach_speed=float(sp["reach_mps"]),
        move_speed=(float(sp["move_mps"][0]), float(sp["move_mps"][1])),
        withdraw_speed=float(sp["withdraw_mps"]),
        hold_s=(float(p["hold_s"][0]), float(p["hold_s"][1])),
        behaviours={str(k): float(v) for k, v in p["behaviours"].items()},
        seed=int(p.get("seed", 0)),
    )
    if spec.reach[0] < spec.hand_length / 2 + spec.forearm_length:
        raise ConfigError("hri.person.reach_m[0] must be at least hand/2 + forearm: the elbow "
                          "must stay on the shoulder's side of the wrist")
    unknown = set(spec.behaviours) - set(BEHAVIOURS)
    if unknown or not any(w > 0 for w in spec.behaviours.values()):
        raise ConfigError(f"hri.person.behaviours: known ones {BEHAVIOURS}, some weight > 0")
    # The SSM's default speeds (used when the person's speed is not measured) must cover the
    # simulated person, or a run without speed measurement would not be conservative.
    ssm = ssm_params(cfg)
    if spec.reach_speed > ssm.hand_speed_default_mps or max(
            spec.move_speed[1], spec.withdraw_speed) > ssm.person_speed_default_mps:
        raise ConfigError("hri.person.speeds exceed hri.ssm's default person/hand speeds")
    return spec


@dataclass(frozen=True)
class PersonPath:
    """The hand centre's path: positions at knot times, straight lines at constant speed between
    (a zero-length segment is a hold); before the first knot and after the last it stands."""

    times: np.ndarray  # (n,) increasing
    points: np.ndarray  # (n, 3)

    @property
    def duration(self) -> float:
        """Time of the last knot."""
        return float(self.times[-1])

    def _segment(self, t: float) -> int:
        return int(np.clip(np.searchsorted(self.times, t, side="right") - 1, 0,
                           len(self.times) - 2))

    def position(self, t: float) -> np.ndarray:
        """Hand centre at time t."""
        if len(self.times) == 1 or t <= self.times[0]:
            return self.points[0].copy()
        if t >= self.times[-1]:
            return self.points[-1].copy()
        i = self._segment(t)
        s = (t - self.times[i]) / (self.times[i + 1] - self.times[i])
        return self.points[i] + s * (self.points[i + 1] - self.points[i])

    def velocity(self, t: float) -> np.ndarray:
        """Hand centre velocity at time t (the segment starting at t, at a knot)."""
        if len(self.times) == 1 or t < self.times[0] or t >= self.times[-1]:
            return np.zeros(3)
        i = self._segment(t)
        return (self.points[i + 1] - self.points[i]) / (self.times[i + 1] - self.times[i])


class _PathBuilder:
    """Appends constant-speed moves and holds to a path, keeping the hand within reach."""

    def __init__(self, spec: PersonSpec, start: np.ndarray) -> None:
        self.spec = spec
        self.times = [0.0]
        self.points = [self._reachable(start)]

    def _reachable(self, p: np.ndarray) -> np.ndarray:
        d = np.asarray(p, float) - self.spec.shoulder
        n = float(np.linalg.norm(d))
        return self.spec.shoulder + d / n * float(np.clip(n, *self.spec.reach))

    def move_to(self, target: np.ndarray, speed: float) -> None:
        a, b = self.points[-1], self._reachable(target)
        # The whole segment must keep the reach (a chord can pass nearer the shoulder than its
        # ends): otherwise the elbow would swing faster than the hand.
        ab = b - a
        s = float(np.clip(np.dot(self.spec.shoulder - a, ab) / max(np.dot(ab, ab), 1e-12), 0, 1))
        if np.linalg.norm(a + s * ab - self.spec.shoulder) < self.spec.reach[0] - 1e-9:
            raise ConfigError(f"hri.person: the path {a} -> {b} passes within reach_m[0] of the "
                              "shoulder; move the shoulder, rest or region")
        length = float(np.linalg.norm(ab))
        if length > 1e-9:
            self.times.append(self.times[-1] + length / speed)
            self.points.append(b)

    def hold(self, seconds: float) -> None:
        self.times.append(self.times[-1] + seconds)
        self.points.append(self.points[-1].copy())

    def build(self) -> PersonPath:
        return PersonPath(np.asarray(self.times), np.asarray(self.points))


@dataclass(frozen=True)
class PersonPose:
    """Keypoints (base frame, m) and their velocities (m/s) at one time, and the capsules' axis."""

    keypoints: dict[str, np.ndarray]
    velocities: dict[str, np.ndarray]
    axis: np.ndarray  # u: shoulder -> hand, unit


def person_xml(cfg: dict[str, Any]) -> str:
    """MJCF of the person's bodies (empty without `hri.person`): one mocap body per capsule,
    the capsule along its local z and centred on its origin; Person.apply poses them."""
    if not enabled(cfg):
        return ""
    spec = person_spec(cfg)
    parts = []
    for name, length, radius in ((FOREARM, spec.forearm_length, spec.forearm_radius),
                                 (HAND, spec.hand_length, spec.hand_radius)):
        parts.append(
            f'<body name="{name}" mocap="true" pos="{" ".join(map(str, spec.rest))}">'
            f'<geom name="{name}" class="skin" type="capsule" size="{radius}" '
            f'fromto="0 0 {-length / 2} 0 0 {length / 2}" conaffinity="{PERSON_CONAFFINITY}"/>'
            "</body>")
    return "\n".join(parts)


class Person:
    """The simulated person of one TabletopSim: its path, pose and monitors."""

    def __init__(self, cfg: dict[str, Any], model: mujoco.MjModel) -> None:
        """Bind to the person's bodies in a model built with person_xml()."""
        self.cfg = cfg
        self.spec = person_spec(cfg)
        self.ssm: SSMParams = ssm_params(cfg)
        self.moving_speed = float(cfg["hri"]["ssm"]["moving_speed_mps"])
        self.horizon_s = float(cfg["sim"]["episode_steps"]) / float(cfg["sim"]["control_hz"])
        self._mocap = [int(model.body_mocapid[model.body(n).id]) for n in (FOREARM, HAND)]
        self.geoms = np.array([model.geom(n).id for n in (FOREARM, HAND)])
        self.path = PersonPath(np.zeros(1), self.spec.rest[None].copy())

    # ------------------------------------------------------------------------- paths
    def reset(self, seed: int | None, pads: Sequence[np.ndarray] = (),
              behaviour: str | None = None) -> PersonPath:
        """A new path from rest: `behaviour` once (scripted) then rest, or (None) a random
        sequence of the configured behaviours covering the episode. Seeded by the episode's seed
        and hri.person.seed; `pads` are the table's pad centres (x, y) to reach to."""
        rng = np.random.default_rng(None if seed is None else [self.spec.seed, int(seed)])
        b = _PathBuilder(self.spec, self.spec.rest)
        if behaviour is not None:
            if behaviour not in BEHAVIOURS:
                raise ValueError(f"unknown behaviour {behaviour!r}; known: {BEHAVIOURS}")
            self._behave(b, behaviour, rng, pads)
        else:
            names = list(self.spec.behaviours)
            w = np.array([self.spec.behaviours[n] for n in names])
            while b.times[-1] < self.horizon_s:
                self._behave(b, names[int(rng.choice(len(names), p=w / w.sum()))], rng, pads)
        self.path = b.build()
        return self.path

    def _behave(self, b: _PathBuilder, name: str, rng: np.random.Generator,
                pads: Sequence[np.ndarray]) -> None:
        s = self.spec

        def hold() -> None:
            b.hold(float(rng.uniform(*s.hold_s)))

        def somewhere() -> np.ndarray:
            return rng.uniform(s.region_min, s.region_max)

        if name == "reach_to_pad":
            xy = np.asarray(pads[int(rng.integers(len(pads)))], float) if len(pads) \
                else somewhere()[:2]
            b.move_to(np.array([xy[0], xy[1], s.pad_height]), s.reach_speed)
            hold()
            b.move_to(s.rest, s.withdraw_speed)
        elif name == "offer":  # an open hand held still where the arm can reach it
            b.move_to(somewhere(), float(rng.uniform(*s.move_speed)))
            hold()
            b.move_to(s.rest, s.withdraw_speed)
        elif name == "wander":
            for _ in range(WANDER_WAYPOINTS):
                b.move_to(somewhere(), float(rng.uniform(*s.move_speed)))
        else:  # withdraw
            b.move_to(s.rest, s.withdraw_speed)
            hold()

    def set_path(self, path: PersonPath) -> None:
        """Follow a given path (tests, replays); the caller keeps it within reach."""
        self.path = path

    # ------------------------------------------------------------------------- pose
    def pose(self, t: float) -> PersonPose:
        """Keypoints (wrist, hand centre, elbow) and their velocities at sim time t."""
        s = self.spec
        h, v = self.path.position(t), self.path.velocity(t)
        d = h - s.shoulder
        n = float(np.linalg.norm(d))
        u = d / n
        du = (v - u * float(u @ v)) / n  # the axis turns with the hand's sideways motion
        to_wrist, to_elbow = s.hand_length / 2, s.hand_length / 2 + s.forearm_length
        return PersonPose(
            {"wrist": h - u * to_wrist, "hand": h, "elbow": h - u * to_elbow},
            {"wrist": v - du * to_wrist, "hand": v, "elbow": v - du * to_elbow}, u)

    def keypoints(self, t: float) -> dict[str, np.ndarray]:
        """Keypoint positions at sim time t (base frame, m)."""
        return self.pose(t).keypoints

    def velocities(self, t: float) -> dict[str, np.ndarray]:
        """Keypoint velocities at sim time t (m/s)."""
        return self.pose(t).velocities

    def speed(self, t: float) -> float:
        """The person's speed at t: its fastest keypoint's."""
        return max(float(np.linalg.norm(v)) for v in self.pose(t).velocities.values())

    def apply(self, model: mujoco.MjModel, data: mujoco.MjData, t: float) -> None:
        """Pose the capsules for time t (mocap; takes effect at the next step or mj_forward)."""
        pose = self.pose(t)
        q = np.zeros(4)
        mujoco.mju_quatZ2Vec(q, pose.axis)
        wrist, elbow = pose.keypoints["wrist"], pose.keypoints["elbow"]
        for mocap, centre in zip(self._mocap, ((wrist + elbow) / 2, pose.keypoints["hand"]),
                                 strict=True):
            data.mocap_pos[mocap] = centre
            data.mocap_quat[mocap] = q

    # ------------------------------------------------------------------------- monitors
    def min_separation(self, model: mujoco.MjModel, data: mujoco.MjData,
                       robot_geoms: np.ndarray, distmax: float = 1.0) -> float:
        """Smallest distance (m) between the arm's collision geoms and the person's capsules,
        by mj_geomDistance (negative: penetration); distmax where none is nearer than that."""
        gap = np.linalg.norm(data.geom_xpos[robot_geoms][:, None]
                             - data.geom_xpos[self.geoms][None], axis=-1) \
            - model.geom_rbound[robot_geoms][:, None] - model.geom_rbound[self.geoms][None]
        best = distmax
        # Bounding spheres first: exact distances only for pairs that may be within distmax.
        for i, j in zip(*np.nonzero(gap < distmax), strict=True):
            best = min(best, mujoco.mj_geomDistance(model, data, int(robot_geoms[i]),
                                                    int(self.geoms[j]), distmax, None))
        return float(best)

    @staticmethod
    def robot_speed(model: mujoco.MjModel, data: mujoco.MjData, robot_geoms: np.ndarray) -> float:
        """Upper bound on the arm's fastest point: per geom, the centre's speed plus the angular
        speed times the bounding radius."""
        vel = np.zeros(6)
        best = 0.0
        for g in robot_geoms:
            mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_GEOM, int(g), vel, 0)
            best = max(best, float(np.linalg.norm(vel[3:])
                                   + np.linalg.norm(vel[:3]) * model.geom_rbound[g]))
        return best

    def cost_sources(self, model: mujoco.MjModel, data: mujoco.MjData,
                     robot_geoms: np.ndarray) -> dict[str, int]:
        """`separation`: the arm moves and is nearer the person than S_p (at the measured speeds,
        the person's true speed); `person_contact`: any contact between them."""
        pairs = data.contact.geom[: data.ncon]
        contact = bool(np.isin(pairs, self.geoms).any())
        v_r = self.robot_speed(model, data, robot_geoms)
        separation = 0
        if v_r > self.moving_speed:
            s_p = protective_distance(self.ssm, v_r, self.speed(data.time))
            # Beyond the stopping data S_p is infinite: that speed near a person is a violation.
            if not math.isfinite(s_p) or self.min_separation(
                    model, data, robot_geoms, s_p + 1e-3) < s_p:
                separation = 1
        return {"separation": separation, "person_contact": int(contact)}
