"""A scripted expert for every task template, acting only through the discrete action set.

It reads privileged simulator state (object and pad positions) and plans waypoints on the TCP's
step_m lattice; each act() returns one action index. It proves every template solvable and makes
demonstrations for pre-training (`record_episode`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from safari_ros.sim.tabletop import StepReport, TabletopSim

MAX_STEPS_PER_GOAL = 20  # a goal not reached by then is dropped and the plan rebuilt
HELD_M = 0.01  # a lift's object this far above its resting height is in the closed hand


@dataclass
class Demonstration:
    """One scripted episode: per-step action indices and step reports, and the outcome."""

    instruction: str
    actions: list[int] = field(default_factory=list)
    reports: list[StepReport] = field(default_factory=list)
    success: bool = False


class ScriptedOracle:
    """Waypoint planner for push / touch / lift over the sim's discrete primitives."""

    def __init__(self, sim: TabletopSim) -> None:
        """Plan for `sim`; call reset() after every sim.reset()."""
        self.sim = sim
        self.index = {a.name: a.index for a in sim.actions}
        self.step = sim.step_m
        self._goals: deque[tuple[str, Any]] = deque()
        self._tries = 0

    def reset(self) -> None:
        """Forget the plan: a new episode starts, or something else moved the arm (a perturbed
        demonstration step) and the next act() plans afresh from the state."""
        self._goals.clear()
        self._tries = 0

    # Heights on the TCP lattice: the grasp/push height nearest the object's centre, and a
    # travel height two steps above it (fingertips clear every object).
    def _levels(self) -> tuple[float, float]:
        z_home = self.sim.home_tcp[2]
        obj_z = self.sim.target_object_position()[2]
        z_low = z_home - self.step * round((z_home - obj_z) / self.step)
        while z_low < self.sim.limits.table_clearance_m + 0.01:
            z_low += self.step
        return z_low, z_low + 2 * self.step

    def _plan(self) -> None:
        task = self.sim.task
        obj = self.sim.target_object_position()
        z_low, z_safe = self._levels()
        gripper_open = self.sim.joint_state().position[7] > 0.5 * self.sim.gripper_open
        goals: list[tuple[str, Any]] = []
        if task.template == "lift":
            lifted = obj[2] > self.sim.rest_height(task.shape) + HELD_M
            if lifted and not gripper_open:  # held: go on lifting
                goals.append(("move", [*self.sim.ee_position()[:2], z_low + 3 * self.step]))
            else:
                if not gripper_open:
                    goals.append(("gripper", "open_gripper"))
                goals += [("move", [obj[0], obj[1], z_safe]), ("move", [obj[0], obj[1], z_low]),
                          ("gripper", "close_gripper"),
                          ("move", [obj[0], obj[1], z_low + 3 * self.step])]
        elif task.template == "touch":
            if gripper_open:
                goals.append(("gripper", "close_gripper"))
            goals += [("move", [obj[0], obj[1], z_safe]), ("move", [obj[0], obj[1], z_low])]
        else:
            goals += self._push_leg(obj, self.sim.target_pad_position(), z_low, z_safe,
                                    gripper_open)
        self._goals.extend(goals)

    def _push_leg(self, obj: np.ndarray, pad: np.ndarray, z_low: float, z_safe: float,
                  gripper_open: bool) -> list[tuple[str, Any]]:
        """One straight push along the axis with the larger remaining distance."""
        d = pad - obj[:2]
        axis = int(np.argmax(np.abs(d)))
        s = float(np.sign(d[axis]))
        start = obj[:2].copy()
        start[axis] -= s * 2 * self.step
        end = obj[:2].copy()
        # The object ends about a fingers-plus-object half width ahead of the TCP.
        end[axis] = pad[axis] - s * 0.036
        close: list[tuple[str, Any]] = [("gripper", "close_gripper")] if gripper_open else []
        return [*close, ("move", [*start, z_safe]), ("move", [*start, z_low]),
                ("move", [*end, z_low]), ("move", [*end, z_safe])]

    def act(self) -> int:
        """The next action index."""
        for _ in range(10):  # a few goals may already be reached
            if not self._goals:
                self._plan()
            kind, goal = self._goals[0]
            if kind in ("gripper", "action"):
                self._goals.popleft()
                return self.index[goal]
            action = self._toward(np.asarray(goal, float))
            self._tries += 1
            if action is not None and self._tries <= MAX_STEPS_PER_GOAL:
                return action
            self._goals.popleft()
            self._tries = 0
        return self.index["stop"]

    def _toward(self, goal: np.ndarray) -> int | None:
        """One lattice move towards goal: up first, then across, then down; None when there."""
        diff = goal - self.sim.ee_position()
        half = self.step / 2
        if np.all(np.abs(diff) < half):
            return None
        if diff[2] > half:
            return self.index["move_up"]
        if max(abs(diff[0]), abs(diff[1])) >= half:
            axis = 0 if abs(diff[0]) >= abs(diff[1]) else 1
            names = (("move_backward", "move_forward"), ("move_right", "move_left"))[axis]
            return self.index[names[int(diff[axis] > 0)]]
        return self.index["move_down"]


def record_episode(
    sim: TabletopSim, seed: int, task: Any = None, template: str | None = None,
    split: str | None = None,
) -> Demonstration:
    """Run the oracle for one episode (up to sim.episode_steps) and return the demonstration."""
    sim.reset(seed=seed, task=task, template=template, split=split)
    oracle = ScriptedOracle(sim)
    demo = Demonstration(sim.instruction)
    for _ in range(sim.episode_steps):
        a = oracle.act()
        report = sim.step(a)
        demo.actions.append(a)
        demo.reports.append(report)
        if report.success:
            demo.success = True
            break
    return demo
