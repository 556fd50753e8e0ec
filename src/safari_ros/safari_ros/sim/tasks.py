"""Language tasks from config `sim.tasks`: instructions, seeded scene layouts, held-out split.

A task is a template (push / touch / lift) applied to one object of a split (train or heldout:
novel objects, colours and phrasings). Layouts put objects and pads on the lattice the TCP reaches
with step_m moves from home, jittered, so every task is solvable with the discrete action set.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TEMPLATES = ("push", "touch", "lift")


class TaskError(ValueError):
    """An instruction or task that the configured splits cannot express."""


@dataclass(frozen=True)
class TaskSpec:
    """What to do: template, the object (shape and colour), the target pad colour (push only)."""

    template: str
    shape: str
    colour: str
    split: str = "train"
    target_colour: str | None = None

    def instruction(self, cfg: dict[str, Any]) -> str:
        """The instruction text, from the split's template phrasing."""
        text = cfg["sim"]["tasks"][self.split]["templates"][self.template]
        return text.format(colour=self.colour, object=self.shape, target_colour=self.target_colour)


@dataclass
class Layout:
    """Where everything starts: objects (shape, colour, xy, yaw) and pads (colour, xy)."""

    objects: list[tuple[str, str, np.ndarray, float]] = field(default_factory=list)
    pads: list[tuple[str, np.ndarray]] = field(default_factory=list)


def parse_instruction(text: str, cfg: dict[str, Any]) -> TaskSpec:
    """The task an instruction names, matched against every split's templates and vocabulary."""
    cleaned = " ".join(text.lower().strip().rstrip(".!").split())
    for split, spec in cfg["sim"]["tasks"].items():
        if not isinstance(spec, dict) or "templates" not in spec:
            continue
        for template, phrasing in spec["templates"].items():
            pattern = re.escape(phrasing)
            for slot in ("colour", "object", "target_colour"):
                pattern = pattern.replace(re.escape("{" + slot + "}"), f"(?P<{slot}>[a-z]+)")
            m = re.fullmatch(pattern, cleaned)
            if not m:
                continue
            slots = m.groupdict()
            if slots["colour"] not in spec["colours"] or slots["object"] not in spec["objects"]:
                continue
            target = slots.get("target_colour")
            if target is not None and target not in spec["colours"]:
                continue
            return TaskSpec(template, slots["object"], slots["colour"], split, target)
    raise TaskError(f"instruction not understood by any task template: {text!r}")


def sample_task(
    rng: np.random.Generator, cfg: dict[str, Any], split: str = "train", template: str | None = None
) -> TaskSpec:
    """A random task of the split (and template, when given)."""
    spec = cfg["sim"]["tasks"][split]
    template = template or str(rng.choice(TEMPLATES))
    if template not in spec["templates"]:
        raise TaskError(f"split {split!r} has no template {template!r}")
    colour = str(rng.choice(spec["colours"]))
    target = None
    if template == "push":
        target = str(rng.choice([c for c in spec["colours"] if c != colour]))
    return TaskSpec(template, str(rng.choice(spec["objects"])), colour, split, target)


def _lattice(cfg: dict[str, Any], anchor: np.ndarray) -> np.ndarray:
    """Lattice points (x, y) of the task region: anchor + k * step_m."""
    step = float(cfg["actions"]["step_m"])
    region = cfg["sim"]["tasks"]["region"]
    axes = []
    for i in range(2):
        lo = np.ceil((region["min"][i] - anchor[i]) / step - 1e-9)
        hi = np.floor((region["max"][i] - anchor[i]) / step + 1e-9)
        axes.append(anchor[i] + step * np.arange(lo, hi + 1))
    return np.array([(x, y) for x in axes[0] for y in axes[1]])


def _in_rect(p: np.ndarray, a: np.ndarray, b: np.ndarray, margin: float) -> bool:
    lo, hi = np.minimum(a, b) - margin, np.maximum(a, b) + margin
    return bool(np.all(p >= lo) and np.all(p <= hi))


def _draw(
    rng: np.random.Generator, cells: np.ndarray, jitter: float, placed: list[np.ndarray],
    rule: Callable[[np.ndarray, list[np.ndarray]], bool] | None, tries: int = 100,
) -> bool:
    """Append a jittered lattice point 0.12 m from all placed ones (room for the open gripper)
    that satisfies rule; False when none was found."""
    for _ in range(tries):
        p = cells[rng.integers(len(cells))] + rng.uniform(-jitter, jitter, size=2)
        if all(np.linalg.norm(p - q) >= 0.12 for q in placed) and (rule is None or rule(p, placed)):
            placed.append(p)
            return True
    return False


def sample_layout(
    rng: np.random.Generator, cfg: dict[str, Any], task: TaskSpec, anchor: np.ndarray
) -> Layout:
    """Seeded positions for the task object, distractors and pads (rejection sampling).

    The first object is the task's; for a push, the first pad is the target. Distractors have
    other (shape, colour) pairs so the instruction is unambiguous.
    """
    tcfg = cfg["sim"]["tasks"]
    spec = tcfg[task.split]
    cells = _lattice(cfg, anchor)
    jitter, max_yaw = float(tcfg["jitter_m"]), float(tcfg["max_yaw_rad"])
    step = float(cfg["actions"]["step_m"])
    n_objects = int(tcfg["objects_per_episode"])
    pairs = [(s, c) for s in spec["objects"] for c in spec["colours"]]
    pairs.remove((task.shape, task.colour))
    pad_colours = [task.target_colour] if task.target_colour else []
    pad_colours += [c for c in rng.permutation(spec["colours"]) if c not in pad_colours]

    def push_ok(p: np.ndarray, placed: list[np.ndarray]) -> bool:
        gap = np.abs(p - placed[0])  # off the pad, but close enough for a short push
        return gap.max() >= 2.5 * step and gap.sum() <= 7.5 * step

    def off_path(p: np.ndarray, placed: list[np.ndarray]) -> bool:
        # Distractors stay off the push's path (object to pad, plus the pusher's approach).
        return not _in_rect(p, placed[0], placed[1], 2.5 * step)

    push = task.template == "push"
    rules = [None, push_ok if push else None, None] + [off_path if push else None] * (n_objects - 1)
    for _ in range(100):
        placed: list[np.ndarray] = []
        for rule in rules:
            if not _draw(rng, cells, jitter, placed, rule):
                break
        if len(placed) < len(rules):
            continue
        obj = [placed[0], *placed[3:]]
        chosen = [pairs[i] for i in rng.choice(len(pairs), size=n_objects - 1, replace=False)]
        shapes = [(task.shape, task.colour), *chosen]
        yaws = rng.uniform(-max_yaw, max_yaw, size=n_objects)
        return Layout(
            objects=[(s, c, obj[i], float(yaws[i])) for i, (s, c) in enumerate(shapes)],
            pads=[(pad_colours[0], placed[1]), (pad_colours[1], placed[2])],
        )
    raise TaskError("could not place the objects: widen sim.tasks.region")
