"""The tabletop scene as MJCF, generated from config/tabletop.yaml and the Panda DH table.

Everything is primitive geometry, so nothing needs downloading: a table whose top is z = 0 of
`base_link`, a 7-DoF Panda (bodies placed by kinematics.dh_link_offset, so MuJoCo and the DH model
agree by construction) with a parallel gripper, a pool of free objects per configured shape (the
unused ones are parked under the table), two coloured target pads, one translucent red box per
keep-out zone of config['safety'] (plus a vase for a fragile object and a hand for a person), and
the RGB-D camera, and with config `hri.person` (the HRI domain) a moving person (sim/person.py).
Run ``python -m safari_ros.sim.scene out.xml`` to write the MJCF for a viewer.
"""

from __future__ import annotations

import sys
from typing import Any

import mujoco
import numpy as np

from safari_ros.config import Box, load_config, safety_limits
from safari_ros.robot import kinematics as kin
from safari_ros.robot.camera import camera_pose
from safari_ros.sim.person import person_xml

CAMERA_NAME = "camera"
TABLE_GEOM = "table"
TCP_SITE = "panda_hand_tcp"
N_PADS = 2
# Geom groups: the camera sees 0-3; keep-out overlays (group 3) are left out of the depth image.
GROUP_ZONE = 3
# Friction (MuJoCo takes the larger of two geoms'): finger 1.0, objects and table 0.6. A pushed
# ball slides against the finger; friction products >= 1 would wedge it into the table.
# Arm gains: stiff enough to track a 0.1 m/s primitive within millimetres; torques capped at the
# Panda's rated joint torques (Nm).
ARM_KP = (2000, 2000, 1500, 1500, 400, 400, 200)
ARM_TORQUE = (87, 87, 87, 87, 12, 12, 12)
FINGER_KP, FINGER_FORCE = 400, 30
# The arm's collision volumes (capsules per link, hand and finger boxes) are kin.LINK_CAPSULES,
# kin.HAND_BOX_* and kin.FINGER_*: the shield checks the same shapes without MuJoCo.


def _fmt(v: Any) -> str:
    return " ".join(f"{float(x):.12g}" for x in np.atleast_1d(v))


def _quat(rot: np.ndarray) -> str:
    """MuJoCo quaternion (w x y z) of a rotation matrix."""
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.asarray(rot, float).reshape(-1))
    return _fmt(q)


def _arm_xml() -> str:
    """The Panda chain from the DH table, nested bodies with hinge joints about local z."""
    lines = [
        '<body name="panda_link0" childclass="arm">',
        '<geom class="arm_visual" type="cylinder" size="0.07 0.07" pos="0 0 0.07"/>',
    ]
    for i in range(7):
        pos, rot = kin.dh_link_offset(i)
        lo, hi = kin.JOINT_LOWER[i], kin.JOINT_UPPER[i]
        lines.append(
            f'<body name="panda_link{i + 1}" pos="{_fmt(pos)}" quat="{_quat(rot)}" gravcomp="1">'
        )
        lines.append(f'<joint name="{kin.ARM_JOINTS[i]}" range="{lo} {hi}"/>')
        for k, (a, b, r) in enumerate(kin.LINK_CAPSULES[i + 1]):
            lines.append(
                f'<geom name="link{i + 1}_{k}" type="capsule" fromto="{_fmt(a)} {_fmt(b)}" '
                f'size="{r}"/>'
            )
    flange, _ = kin.dh_link_offset(7)
    hand_rot = np.array(
        [[np.cos(kin.HAND_YAW), -np.sin(kin.HAND_YAW), 0], [np.sin(kin.HAND_YAW),
         np.cos(kin.HAND_YAW), 0], [0, 0, 1]]
    )
    fx, fy, fz = kin.FINGER_HALF
    lines += [
        f'<body name="panda_hand" pos="{_fmt(flange)}" quat="{_quat(hand_rot)}" gravcomp="1">',
        f'<geom name="hand" type="box" size="{_fmt(kin.HAND_BOX_HALF)}" '
        f'pos="{_fmt(kin.HAND_BOX_CENTER)}"/>',
        f'<site name="{TCP_SITE}" pos="0 0 {kin.TCP_OFFSET}" size="0.006" rgba="1 0 1 0"/>',
    ]
    for j, sign in ((0, 1), (1, -1)):
        name = ("panda_leftfinger", "panda_rightfinger")[j]
        lines += [
            f'<body name="{name}" pos="0 0 {kin.FINGER_BASE_Z}" gravcomp="1">',
            f'<joint name="{kin.FINGER_JOINTS[j]}" class="finger" axis="0 {sign} 0"/>',
            f'<geom name="finger{j}" class="finger" type="box" size="{fx} {fy} {fz}" '
            f'pos="0 {sign * fy} {fz}"/>',
            "</body>",
        ]
    lines += ["</body>"] + ["</body>"] * 7 + ["</body>"]
    return "\n".join(lines)


def _zone_xml(zone: Box) -> str:
    """A keep-out zone: the translucent red box, plus what makes it one (vase, person's hand)."""
    c, h = zone.center, zone.half_extents
    parts = [
        f'<geom name="keep_out/{zone.name}" class="zone" type="box" pos="{_fmt(c)}" '
        f'size="{_fmt(h)}"/>'
    ]
    top = c[2] + h[2]
    if zone.kind == "fragile_object":
        # Collidable and welded to the world: any contact with it is a fragile contact.
        r = 0.6 * min(h[0], h[1])
        parts += [
            f'<body name="{zone.name}" pos="{c[0]} {c[1]} 0">',
            f'<geom name="{zone.name}/body" class="fragile" type="cylinder" '
            f'size="{r} {0.3 * top}" pos="0 0 {0.3 * top}"/>',
            f'<geom name="{zone.name}/neck" class="fragile" type="cylinder" '
            f'size="{0.55 * r} {0.15 * top}" pos="0 0 {0.75 * top}"/>',
            f'<geom name="{zone.name}/lip" class="fragile" type="cylinder" '
            f'size="{0.8 * r} {0.03 * top}" pos="0 0 {0.9 * top}"/>',
            "</body>",
        ]
    elif zone.kind == "person":
        # A hand resting on the table, reaching in from the nearer side edge (visual only).
        side = -1.0 if c[1] < 0 else 1.0
        palm = np.array([c[0], c[1], 0.014])
        parts.append(
            f'<geom name="{zone.name}/palm" class="skin" type="box" size="0.04 0.045 0.012" '
            f'pos="{_fmt(palm)}"/>'
        )
        for k, dx in enumerate((-0.027, -0.009, 0.009, 0.027)):
            length = 0.05 if k in (1, 2) else 0.04
            a = palm + np.array([dx, -side * 0.045, 0])
            b = a + np.array([0, -side * length, -0.004])
            parts.append(
                f'<geom name="{zone.name}/finger{k}" class="skin" type="capsule" size="0.008" '
                f'fromto="{_fmt(a)} {_fmt(b)}"/>'
            )
        wrist = palm + np.array([0, side * 0.045, 0.005])
        elbow = np.array([c[0], side * 0.75, 0.08])
        parts.append(
            f'<geom name="{zone.name}/forearm" class="skin" type="capsule" size="0.03" '
            f'fromto="{_fmt(wrist)} {_fmt(elbow)}"/>'
        )
    return "\n".join(parts)


def parked_position(index: int) -> np.ndarray:
    """Where unused pool object `index` waits: under the table, out of the camera's view."""
    return np.array([-0.2 + 0.07 * (index % 10), -0.5 + 0.07 * (index // 10), -0.3])


def object_body_name(shape: str, k: int) -> str:
    """Body (and geom) name of the k-th pool instance of a shape."""
    return f"object/{shape}/{k}"


def _objects_xml(sim_cfg: dict[str, Any]) -> str:
    per_episode = int(sim_cfg["tasks"]["objects_per_episode"])
    lines, index = [], 0
    for shape, spec in sim_cfg["shapes"].items():
        # Balls roll: rolling friction (condim 6) stops them within ~1 cm after a push.
        cls = "ball" if spec["type"] == "sphere" else "object"
        for k in range(per_episode):
            name = object_body_name(shape, k)
            lines += [
                f'<body name="{name}" pos="{_fmt(parked_position(index))}">',
                "<freejoint/>",
                f'<geom name="{name}" class="{cls}" type="{spec["type"]}" '
                f'size="{_fmt(spec["size"])}"/>',
                "</body>",
            ]
            index += 1
    return "\n".join(lines)


def build_mjcf(cfg: dict[str, Any]) -> str:
    """The full scene for a loaded config, as an MJCF string."""
    sim = cfg["sim"]
    cam = sim["camera"]
    pose = camera_pose(cam)
    limits = safety_limits(cfg)
    width, height = int(cam["width"]), int(cam["height"])
    pads = "\n".join(
        f'<body name="pad/{i}" mocap="true" pos="{_fmt(parked_position(90 + i))}">'
        f'<geom name="pad/{i}" class="visual" type="box" '
        f'size="{sim["tasks"]["pad_half_m"]} {sim["tasks"]["pad_half_m"]} 0.0008"/></body>'
        for i in range(N_PADS)
    )
    return f"""<mujoco model="safari_tabletop">
<compiler angle="radian" autolimits="true"/>
<option timestep="{sim["physics_dt"]}" integrator="implicitfast" cone="elliptic" impratio="10"/>
<statistic extent="1" center="0.4 0 0.2"/>
<visual>
  <global offwidth="{width}" offheight="{height}"/>
  <map znear="0.02" zfar="20"/>
  <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5"/>
</visual>
<asset>
  <texture name="sky" type="skybox" builtin="gradient" rgb1="0.75 0.8 0.88" rgb2="0.35 0.4 0.5"
   width="64" height="64"/>
  <texture name="wood" type="2d" builtin="checker" rgb1="0.62 0.52 0.4" rgb2="0.58 0.48 0.37"
   width="64" height="64"/>
  <material name="wood" texture="wood" texrepeat="8 8"/>
</asset>
<default>
  <geom solref="0.005 1" friction="0.6 0.005 0.0001"/>
  <default class="arm">
    <joint armature="0.1" damping="1"/>
    <geom contype="2" conaffinity="1" rgba="0.92 0.92 0.92 1" group="1"/>
    <default class="arm_visual"><geom contype="0" conaffinity="0"/></default>
    <default class="finger">
      <joint type="slide" range="{kin.FINGER_RANGE[0]} {kin.FINGER_RANGE[1]}" armature="0.01"
       damping="2"/>
      <geom friction="1 0.01 0.001" condim="4" rgba="0.25 0.25 0.25 1"/>
    </default>
  </default>
  <default class="object">
    <geom density="500" condim="4" friction="0.6 0.01 0.001" group="0"/>
  </default>
  <default class="ball">
    <geom density="500" condim="6" friction="0.6 0.01 0.002" group="0"/>
  </default>
  <default class="visual"><geom contype="0" conaffinity="0" group="2"/></default>
  <default class="skin"><geom contype="0" conaffinity="0" group="2" rgba="0.87 0.68 0.55 1"/>
  </default>
  <default class="fragile"><geom rgba="0.55 0.75 0.85 1" group="0"/></default>
  <default class="zone">
    <geom contype="0" conaffinity="0" group="{GROUP_ZONE}" rgba="1 0 0 0.25"/>
  </default>
</default>
<worldbody>
  <light pos="0.4 0 2.0" dir="0 0 -1" diffuse="0.6 0.6 0.6" castshadow="false"/>
  <geom name="{TABLE_GEOM}" type="box" pos="0.35 0 -0.025" size="0.7 0.75 0.025"
   material="wood"/>
  <camera name="{CAMERA_NAME}" pos="{_fmt(pose.position)}"
   xyaxes="{_fmt(pose.right)} {_fmt(pose.up)}" fovy="{cam["fovy_deg"]}"/>
  {"".join(_zone_xml(z) for z in limits.keep_out_zones)}
  {pads}
  {_objects_xml(sim)}
  {_arm_xml()}
  {person_xml(cfg)}
</worldbody>
<actuator>
  {"".join(
      f'<position name="{j}" joint="{j}" kp="{kp}" dampratio="1" forcerange="-{t} {t}"/>'
      for j, kp, t in zip(kin.ARM_JOINTS, ARM_KP, ARM_TORQUE, strict=True))}
  {"".join(
      f'<position name="{j}" joint="{j}" kp="{FINGER_KP}" dampratio="1" '
      f'forcerange="-{FINGER_FORCE} {FINGER_FORCE}"/>' for j in kin.FINGER_JOINTS)}
</actuator>
</mujoco>
"""


def main(argv: list[str] | None = None) -> None:
    """Write the MJCF of the configured scene to the file named on the command line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m safari_ros.sim.scene OUT.xml")
    with open(args[0], "w") as f:
        f.write(build_mjcf(load_config()))


if __name__ == "__main__":
    main()
