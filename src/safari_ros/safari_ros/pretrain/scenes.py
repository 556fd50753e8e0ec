"""Randomised tabletop scenes and their captions: the image-caption pairs SAFARI's backbone CLIP
is pre-trained on (`safari_pretrain backbone`).

The scenes are rendered by the task's own simulator (sim/tabletop.py, same camera, same arm), with
far more variety than any task layout: every shape and colour of both task splits plus the extras
of config/backbone.yaml, one to five objects anywhere on the table, coloured pads, the arm in any
reachable pose with the gripper open or closed, the keep-out props (vase, person's hand) moved or
left out, the zone overlays drawn or not, and lighting, table colour and camera pose jittered.

The backbone sees the window of the camera image named by learning.backbone.roi, as the stack
does; a caption states only what that window shows (objects, pads and props under
VISIBLE_MIN_PX pixels of it are left out), and each scene also carries a label map: which
object, pad, prop, the gripper, the arm or the table each pixel shows, the targets of the
dense (patch-to-phrase) loss that makes the patch features say what lies where.

Captions state facts about a scene (objects, colours, shapes, left/right/in front/behind, the
gripper's state, height and what it is near, pads, props), never the task: no action names,
instruction phrasings, rewards or success. Directions are the robot's (REP-103: x forward, away
from the robot's base; y left), as a robot's operator would say them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from safari_ros.core.backbone import crop_roi
from safari_ros.core.hparams import RegionOfInterest
from safari_ros.core.language import article
from safari_ros.robot import kinematics as kin
from safari_ros.sim import scene
from safari_ros.sim.tabletop import TabletopSim
from safari_ros.sim.tasks import Layout

__all__ = [
    "PlacedObject",
    "Prop",
    "SceneRandomiser",
    "SceneState",
    "caption_for_evaluation",
    "caption_for_training",
    "patch_label_fractions",
    "scene_config",
    "scene_facts",
]

# A relation is only stated when the two positions differ by more than this along its axis, so
# that no caption is borderline.
RELATION_GAP_M = 0.05
NEAR_M = 0.10  # "near": horizontal centre distance below this
ABOVE_M = 0.035  # "right above": the TCP within this of an object's centre, horizontally
PROP_WORDS = {"fragile_object": "a glass vase", "person": "a person's hand"}
PROP_NOUNS = {"fragile_object": "the vase", "person": "the person's hand"}
VISIBLE_MIN_PX = 12  # pixels of the camera image a thing needs inside the ROI to be "seen"
TABLE, ARM, GRIPPER = "the table", "the robot arm", "the gripper"  # label phrases 0, 1, 2


@dataclass(frozen=True)
class PlacedObject:
    """An object on the table: shape and colour words and its centre (base frame, metres)."""

    shape: str
    colour: str
    position: np.ndarray

    @property
    def name(self) -> str:
        """'red cube'."""
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Prop:
    """A keep-out zone's prop (the vase, the person's hand): where it stands; None: left out."""

    zone: str
    kind: str
    position: np.ndarray | None


@dataclass(frozen=True)
class SceneState:
    """Everything a caption may state about one rendered scene."""

    objects: tuple[PlacedObject, ...]
    pads: tuple[tuple[str, np.ndarray], ...]  # colour, centre xy
    tcp: np.ndarray  # measured TCP position after IK
    gripper_open: bool
    props: tuple[Prop, ...]
    zones_drawn: bool


def scene_config(cfg: dict[str, Any], data_cfg: dict[str, Any]) -> dict[str, Any]:
    """A copy of the tabletop config whose simulator holds the extra shapes and colours and a
    pool of objects large enough for the busiest scene."""
    out = copy.deepcopy(cfg)
    sim, scenes = out["sim"], data_cfg["scenes"]
    clash = sorted((set(scenes["extra_shapes"]) & set(sim["shapes"]))
                   | (set(scenes["extra_colours"]) & set(sim["colours"])))
    if clash:
        raise ValueError(f"backbone extra shapes/colours {clash} are already task words")
    sim["shapes"] = {**sim["shapes"], **scenes["extra_shapes"]}
    sim["colours"] = {**sim["colours"], **scenes["extra_colours"]}
    sim["tasks"]["objects_per_episode"] = int(scenes["objects"][1])
    return out


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class SceneRandomiser:
    """Samples, arranges and renders random scenes in one TabletopSim (one GL context)."""

    def __init__(self, cfg: dict[str, Any], data_cfg: dict[str, Any]) -> None:
        self.cfg = scene_config(cfg, data_cfg)
        self.p = data_cfg["scenes"]
        self.sim = TabletopSim(self.cfg)
        self.shapes = sorted(self.cfg["sim"]["shapes"])
        self.colours = sorted(self.cfg["sim"]["colours"])
        m = self.sim.model
        self._cam = m.camera(scene.CAMERA_NAME).id
        self._wood = m.material("wood").id
        self._defaults = {
            "light": m.light_diffuse[0].copy(),
            "ambient": m.vis.headlight.ambient.copy(),
            "wood": m.mat_rgba[self._wood].copy(),
        }
        # Each zone's prop: the geoms (and the vase's body) that move with it.
        self._zones = self.sim.limits.keep_out_zones
        self._prop_geoms = {
            z.name: [g for g in range(m.ngeom)
                     if m.geom(g).name.startswith(f"{z.name}/") or m.geom(g).name ==
                     f"keep_out/{z.name}"]
            for z in self._zones}
        self._prop_bodies = {z.name: [b for b in range(m.nbody) if m.body(b).name == z.name]
                             for z in self._zones}
        self._geom_pos = m.geom_pos.copy()
        self._body_pos = m.body_pos.copy()
        self._home_q = np.asarray(self.cfg["sim"]["home_joint_positions"], float)
        self._down = kin.tcp_pose(self._home_q)[1]

    def close(self) -> None:
        """Release the renderer."""
        self.sim.close()

    def _uniform(self, rng: np.random.Generator, key: str) -> float:
        lo, hi = self.p[key]
        return float(rng.uniform(lo, hi))

    def _jitter_world(self, rng: np.random.Generator) -> None:
        m = self.sim.model
        m.light_diffuse[0] = self._defaults["light"] / self._defaults["light"].max() * \
            self._uniform(rng, "light_diffuse")
        m.vis.headlight.ambient[:] = self._uniform(rng, "headlight_ambient")
        tint = self._uniform(rng, "table_tint")
        m.mat_rgba[self._wood, :3] = np.clip(self._defaults["wood"][:3] * tint, 0.0, 1.0)
        j = float(self.p["camera_jitter_m"])
        cam = dict(self.cfg["sim"]["camera"])
        cam["position"] = np.asarray(cam["position"], float) + rng.uniform(-j, j, 3)
        cam["look_at"] = np.asarray(cam["look_at"], float) + rng.uniform(-j, j, 3)
        pose = scene.camera_pose(cam)
        m.cam_pos[self._cam] = pose.position
        # MuJoCo's camera frame: x right, y up, z backwards (it looks along -z)
        mujoco.mju_mat2Quat(m.cam_quat[self._cam],
                            np.column_stack([pose.right, pose.up, -pose.forward]).reshape(-1))

    def _place_props(self, rng: np.random.Generator) -> tuple[Prop, ...]:
        m, props = self.sim.model, []
        s = float(self.p["prop_shift_m"])
        for z in self._zones:
            hidden = rng.random() < float(self.p["prop_hidden_prob"])
            shift = np.array([0.0, 0.0, -5.0]) if hidden else np.array(
                [*rng.uniform(-s, s, 2), 0.0])
            for g in self._prop_geoms[z.name]:
                m.geom_pos[g] = self._geom_pos[g] + shift
            for b in self._prop_bodies[z.name]:
                m.body_pos[b] = self._body_pos[b] + shift
            centre = np.array([z.center[0], z.center[1], 0.0]) + shift
            props.append(Prop(z.name, z.kind, None if hidden else centre))
        return tuple(props)

    def _free_spot(self, rng: np.random.Generator,
                   taken: list[tuple[np.ndarray, float]]) -> np.ndarray | None:
        """A spot in the region at least each taken spot's clearance away from it."""
        lo, hi = np.asarray(self.p["region"]["min"]), np.asarray(self.p["region"]["max"])
        for _ in range(50):
            xy = rng.uniform(lo, hi)
            if all(np.linalg.norm(xy - t) > gap for t, gap in taken):
                return xy
        return None

    def _arm(self, rng: np.random.Generator) -> np.ndarray:
        box = self.p["tcp_region"]
        target = rng.uniform(box["min"], box["max"])
        yaw = rng.uniform(-1, 1) * float(self.p["tcp_yaw_jitter_rad"])
        ik = kin.solve_ik(target, _rot_z(yaw) @ self._down, self._home_q, q_rest=self._home_q,
                          limit_margin=0.05, iterations=80)
        return ik.q  # unconverged IK still gives a valid pose nearby; captions use the real TCP

    def sample(self, rng: np.random.Generator) -> SceneState:
        """Arrange a new random scene in the simulator and return what is true of it."""
        self._jitter_world(rng)
        props = self._place_props(rng)
        gap = float(self.p["min_gap_m"])
        # props are bigger than objects (the hand's fingers reach 9 cm): keep objects clear
        taken = [(p.position[:2], 0.1) for p in props if p.position is not None]
        n_obj = int(rng.integers(self.p["objects"][0], self.p["objects"][1] + 1))
        names = rng.permutation([(s, c) for s in self.shapes for c in self.colours])[:n_obj]
        layout, objects = Layout(), []
        for shape, colour in names:
            xy = self._free_spot(rng, taken)
            if xy is None:
                continue
            taken.append((xy, gap))
            yaw = float(rng.uniform(-math.pi, math.pi))
            layout.objects.append((str(shape), str(colour), xy, yaw))
        n_pads = int(rng.integers(self.p["pads"][0], self.p["pads"][1] + 1))
        pad_colours = rng.permutation(self.colours)[:n_pads]
        for colour in pad_colours:
            lo, hi = np.asarray(self.p["region"]["min"]), np.asarray(self.p["region"]["max"])
            layout.pads.append((str(colour), rng.uniform(lo, hi)))
        q = self._arm(rng)
        gripper_open = bool(rng.random() < 0.5)
        finger = float(self.cfg["sim"]["gripper_open_m"]) if gripper_open else 0.0
        self.sim.arrange(layout, q, finger)
        for shape, colour, xy, _ in layout.objects:
            objects.append(PlacedObject(shape, colour,
                                        np.array([*xy, self.sim.rest_height(shape)])))
        return SceneState(
            objects=tuple(objects),
            pads=tuple((c, np.asarray(xy, float)) for c, xy in layout.pads),
            tcp=self.sim.ee_position().copy(),
            gripper_open=gripper_open,
            props=props,
            zones_drawn=bool(rng.random() < float(self.p["zone_overlay_prob"])),
        )

    def render(self, state: SceneState) -> np.ndarray:
        """The colour image of the arranged scene (uint8 HxWx3, the task camera's size)."""
        return self.sim.render_rgb(show_zones=state.zones_drawn)

    def render_labelled(self, state: SceneState, roi: RegionOfInterest | None
                        ) -> tuple[np.ndarray, SceneState, list[str], np.ndarray]:
        """The ROI's window of the colour image, the state reduced to what the window shows,
        the label phrases ("the table", "the robot arm", "the gripper", then "a red cube", "a
        blue square pad", "a glass vase", ...) and the window's label map (HxW int16 indices
        into the phrases)."""
        rgb = crop_roi(self.render(state), roi)
        seg = crop_roi(self.sim.render_segmentation()[..., None], roi)[..., 0]
        m, bodies = self.sim.model, self.sim.body_ids()
        body_label = np.zeros(m.nbody, np.int16)  # unlabelled bodies (table, world): 0
        body_label[bodies["arm"]] = 1
        body_label[bodies["gripper"]] = 2
        phrases = [TABLE, ARM, GRIPPER]
        owners: list[tuple[str, Any]] = []  # what phrase 3 + i names: ("object"/"pad", index)
        for i, o in enumerate(state.objects):
            body_label[bodies[o.name]] = len(phrases)
            phrases.append(f"{article(o.colour)} {o.name}")
            owners.append(("object", i))
        for i, (colour, _) in enumerate(state.pads):
            body_label[bodies["pads"][i]] = len(phrases)
            phrases.append(f"{article(colour)} {colour} square pad")
            owners.append(("pad", i))
        geom_label = body_label[m.geom_bodyid]
        for prop in state.props:
            if prop.position is not None:
                geom_label[self._prop_geoms[prop.zone]] = len(phrases)
                phrases.append(PROP_WORDS[prop.kind])
                owners.append(("prop", prop.zone))
        labels = np.where(seg >= 0, geom_label[np.maximum(seg, 0)], 0).astype(np.int16)
        counts = np.bincount(labels.reshape(-1), minlength=len(phrases))
        seen = {owner for owner, n in zip(owners, counts[3:], strict=True)
                if n >= VISIBLE_MIN_PX}
        visible = dataclasses.replace(
            state,
            objects=tuple(o for i, o in enumerate(state.objects) if ("object", i) in seen),
            pads=tuple(p for i, p in enumerate(state.pads) if ("pad", i) in seen),
            props=tuple(p if ("prop", p.zone) in seen else dataclasses.replace(p, position=None)
                        for p in state.props))
        return rgb, visible, phrases, labels


def patch_label_fractions(labels: np.ndarray, n_labels: int, size: int, grid: int
                          ) -> np.ndarray:
    """(grid * grid, n_labels) float32: the share of each patch (row-major, as the ViT orders
    its tokens) that each label covers, once the HxW label map is resized to size x size
    (nearest) as the image is."""
    h, w = labels.shape
    rows = np.minimum((np.arange(size) + 0.5) * h / size, h - 1).astype(int)
    cols = np.minimum((np.arange(size) + 0.5) * w / size, w - 1).astype(int)
    resized = labels[rows][:, cols]
    cell = size // grid
    blocks = resized[:cell * grid, :cell * grid].reshape(grid, cell, grid, cell)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(grid * grid, cell * cell)
    out = np.zeros((grid * grid, n_labels), np.float32)
    for label in range(n_labels):
        out[:, label] = (blocks == label).mean(1)
    return out


# ------------------------------------------------------------------------------------ captions
def _listing(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _relation(a: np.ndarray, b: np.ndarray) -> str | None:
    """Where a is relative to b, in the robot's directions, or None if too close to call."""
    dx, dy = float(a[0] - b[0]), float(a[1] - b[1])
    parts = []
    if abs(dy) > RELATION_GAP_M:
        parts.append("left of" if dy > 0 else "right of")
    if abs(dx) > RELATION_GAP_M:
        parts.append("in front of" if dx > 0 else "behind")
    return " and ".join(parts) if parts else None


def _height_words(z: float) -> str:
    if z < 0.08:
        return "low, close to the table"
    if z < 0.22:
        return "at medium height"
    return "high above the table"


def gripper_fact(state: SceneState) -> str:
    """'the gripper is open and high above the table'."""
    return (f"the gripper is {'open' if state.gripper_open else 'closed'} and "
            f"{_height_words(float(state.tcp[2]))}")


def inventory_fact(state: SceneState) -> str:
    """'a red cube, a blue ball and a pink egg on a table'."""
    if not state.objects:
        return "an empty table"
    return _listing([f"{article(o.colour)} {o.name}" for o in state.objects]) + " on a table"


def scene_facts(state: SceneState) -> list[str]:
    """Every fact the captions may state about a scene, the inventory first."""
    facts = [inventory_fact(state), gripper_fact(state)]
    objs = state.objects
    for i, a in enumerate(objs):
        for b in objs[i + 1:]:
            rel = _relation(a.position, b.position)
            if rel:
                facts.append(f"the {a.name} is {rel} the {b.name}")
        rel = _relation(a.position, state.tcp)
        if rel:
            facts.append(f"the {a.name} is {rel} the gripper")
    if objs:
        flat = [float(np.linalg.norm(o.position[:2] - state.tcp[:2])) for o in objs]
        nearest = objs[int(np.argmin(flat))]
        if min(flat) < ABOVE_M:
            facts.append(f"the gripper is right above the {nearest.name}")
        elif min(flat) < NEAR_M:
            facts.append(f"the gripper is near the {nearest.name}")
    for colour, xy in state.pads:
        facts.append(f"{article(colour)} {colour} square pad lies on the table")
        for o in objs:
            if np.all(np.abs(o.position[:2] - xy) < 0.05):
                facts.append(f"the {o.name} is on the {colour} pad")
    for prop in state.props:
        if prop.position is None:
            continue
        facts.append(f"{PROP_WORDS[prop.kind]} on the table")
        for o in objs:
            if float(np.linalg.norm(o.position[:2] - prop.position[:2])) < 0.15:
                facts.append(f"the {o.name} is near {PROP_NOUNS[prop.kind]}")
    if state.zones_drawn:
        facts.append("translucent warning boxes are drawn")
    return facts


def caption_for_training(facts: list[str], rng: np.random.Generator, max_words: int = 26) -> str:
    """A random caption of a scene: its inventory (facts[0]: what is on the table, the signal
    that tells scenes apart from the first step) and up to two more of its facts in random
    order, short enough for the text tower's context (about 1.3 tokens a word)."""
    chosen = [facts[0]]
    words = len(facts[0].split())
    for i in 1 + rng.permutation(len(facts) - 1):
        n = len(facts[i].split())
        if words + n > max_words or len(chosen) >= 3:
            continue
        chosen.append(facts[i])
        words += n
    return "; ".join(chosen)


def caption_for_evaluation(state: SceneState) -> str:
    """The one fixed caption of a held-out scene for retrieval: inventory and gripper."""
    return f"{inventory_fact(state)}; {gripper_fact(state)}"
