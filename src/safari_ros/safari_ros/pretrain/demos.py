"""Demonstrations for pre-training: the scripted oracle in the MuJoCo tabletop, written as a
rosbag2 MCAP bag under the live stack's topic names (what `read_episodes` and pre-training read).

Some steps are perturbed on purpose so that the data holds violations as well as expert actions:
with probability `epsilon` per step a random action starts and is held for `hold` steps (noise:
some episodes fail, a few steps cost), and with probability `drift_prob` an episode holds one
unsafe drift: from a random step of its first half the arm moves down until it hits the table
(cost) or `max_drift` steps pass. Random actions alone rarely cost anything (about 2-4 % of
steps, often for reasons no state shows), which leaves the safety head too few and too noisy
positives; the drift is the typical violation of a tabletop (pressing into the table), caused by
the action from a state that shows it. The bag's action stream is
safari_msgs/ShieldDecision with proposed = the oracle's choice and executed = what ran, so
pre-training can tell expert steps (proposed == executed) from perturbed ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safari_ros.bags import BagRecorder, Episode, Step
from safari_ros.sim import JOINT_NAMES, ScriptedOracle, TabletopSim
from safari_ros.sim.tasks import TEMPLATES

__all__ = ["DemoSummary", "generate_demos", "rollout"]

log = logging.getLogger(__name__)

T0_NS = 1_700_000_000 * 1_000_000_000  # a realistic epoch for the bag's stamps
EPISODE_GAP_S = 5.0  # quiet time between episodes (more than the topic map's episode gap)


@dataclass
class DemoSummary:
    """What `generate_demos` wrote."""

    path: str
    episodes: int
    steps: int
    successes: int
    costly_steps: int  # steps with cost c_t = 1
    perturbed_steps: int  # steps whose executed action was random, not the oracle's

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON)."""
        return asdict(self)


def rollout(
    sim: TabletopSim,
    seed: int,
    template: str,
    rng: np.random.Generator,
    *,
    epsilon: float,
    hold: int,
    drift_at: int | None = None,
    max_drift: int = 8,
    episode_id: int,
    start_ns: int,
    split: str | None = None,
) -> Episode:
    """One rendered oracle episode with epsilon-random drifts, as bag `Step`s.

    Each step holds the observation before the action (images, joints), the oracle's proposal,
    the executed action and the feedback of executing it, stamped with the frame's sim time.
    """
    sim.reset(seed=seed, template=template, split=split)
    oracle = ScriptedOracle(sim)
    camera_k = sim.camera_matrix()
    steps: list[Step] = []
    random_left, random_action = 0, 0
    down = next(a.index for a in sim.actions if a.delta[2] < 0)
    drift_left = 0
    for index in range(sim.episode_steps):
        stamp = start_ns + round(sim.sim_time * 1e9)
        rgb, depth = sim.render_rgbd()
        joints = sim.joint_state()
        proposed = oracle.act()
        if random_left == 0 and rng.random() < epsilon:
            random_left, random_action = hold, int(rng.integers(len(sim.actions)))
        executed = proposed
        if random_left > 0:
            executed, random_left = random_action, random_left - 1
        if index == drift_at:
            drift_left = max_drift
        if drift_left > 0:
            executed, drift_left = down, drift_left - 1
        report = sim.step(executed)
        if report.cost:
            drift_left = 0  # the violation happened: the oracle takes over again
        if executed != proposed:
            # The oracle's plan assumed its own action (a grasp it did not make, an object where
            # it was): it plans again from the state it now finds, so that a perturbed episode
            # shows the recovery and can still succeed (only successes are cloned).
            oracle.reset()
        done = report.success or index == sim.episode_steps - 1
        steps.append(Step(
            stamp_ns=stamp, rgb=rgb, depth=depth, camera_k=camera_k,
            joint_names=tuple(JOINT_NAMES), joint_positions=joints.position,
            joint_velocities=joints.velocity, instruction=sim.instruction,
            action=executed, proposed_action=proposed, reward=report.reward,
            cost=float(report.cost), cost_sources={k: bool(v) for k, v in
                                                   report.cost_sources.items()},
            done=done, success=report.success, episode_id=episode_id, index=index,
        ))
        if done:
            break
    return Episode(episode_id, steps)


def generate_demos(
    cfg: dict[str, Any],
    out: str | os.PathLike[str],
    *,
    episodes_per_template: int,
    epsilon: float = 0.1,
    hold: int = 3,
    drift_prob: float = 0.5,
    seed: int = 0,
    templates: Sequence[str] = TEMPLATES,
    split: str = "train",
    storage: str = "mcap",
) -> DemoSummary:
    """Record `episodes_per_template` oracle episodes of each template into a new bag at `out`.

    Episodes alternate between templates; episode seeds and perturbations come from one seeded
    generator, so the same arguments give the same bag contents. Camera size is the config's
    sim.camera (shrink it for fast tests).
    """
    if not (0.0 <= epsilon <= 1.0 and 0.0 <= drift_prob <= 1.0 and hold >= 1):
        raise ValueError(f"need epsilon and drift_prob in [0, 1] and hold >= 1, got {epsilon}, "
                         f"{drift_prob}, {hold}")
    rng = np.random.default_rng(seed)
    sim = TabletopSim(cfg, split=split)
    period_ns = round((sim.episode_steps * sim.control_period + EPISODE_GAP_S) * 1e9)
    counts = {"episodes": 0, "steps": 0, "successes": 0, "costly_steps": 0, "perturbed_steps": 0}
    try:
        with BagRecorder(out, storage=storage) as recorder:
            for i in range(episodes_per_template):
                for template in templates:
                    n = counts["episodes"]
                    drift = rng.random() < drift_prob
                    drift_at = int(rng.integers(sim.episode_steps // 2)) if drift else None
                    episode = rollout(sim, int(rng.integers(2**31)), template, rng,
                                      epsilon=epsilon, hold=hold, drift_at=drift_at,
                                      episode_id=n, start_ns=T0_NS + n * period_ns, split=split)
                    recorder.write_episode(episode)
                    counts["episodes"] += 1
                    counts["steps"] += len(episode)
                    counts["successes"] += int(episode.success)
                    counts["costly_steps"] += sum(int(s.cost > 0) for s in episode.steps)
                    counts["perturbed_steps"] += sum(
                        int(s.action != s.proposed_action) for s in episode.steps)
                log.info("demos: %d/%d rounds of %s", i + 1, episodes_per_template,
                         "/".join(templates))
    finally:
        sim.close()
    return DemoSummary(path=str(Path(out)), **counts)
