"""The grounding term of pre-training: hindsight labels of where the named object stands, and
the loss that teaches the spatial readout to attend there."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from safari_ros.bags.dataset import Episode, Step
from safari_ros.core.features import DEPTH_CHANNELS
from safari_ros.core.losses import grounding_loss
from safari_ros.pretrain.features import _hindsight_ground
from safari_ros.sim import TabletopSim
from safari_ros.sim.oracle import ScriptedOracle


def _episode(sim: TabletopSim, template: str, seed: int) -> tuple[Episode, np.ndarray]:
    """The oracle's episode as a log holds it (joint states, instruction, success), and the
    object's true position at the start."""
    sim.reset(seed=seed, template=template)
    start = sim.target_object_position().copy()
    oracle, steps, success = ScriptedOracle(sim), [], False
    for i in range(sim.episode_steps):
        q = sim.proprio()[:9].astype(np.float64)
        steps.append(Step(stamp_ns=i, rgb=np.zeros((1, 1, 3), np.uint8), joint_positions=q,
                          instruction=sim.task.instruction(sim.cfg), action=oracle.act(),
                          index=i))
        report = sim.step(steps[-1].action)
        if report.success:
            success = steps[-1].success = steps[-1].done = True
            break
    assert success, f"the oracle failed {template} seed {seed}"
    return Episode(seed, steps), start


@pytest.fixture(scope="module")
def sim() -> TabletopSim:
    s = TabletopSim()
    yield s
    s.close()


@pytest.mark.parametrize(("template", "seed"), [("touch", 1), ("touch", 2), ("lift", 3),
                                                ("lift", 4)])
def test_a_task_that_ends_at_its_one_object_labels_where_the_object_stood(
        sim: TabletopSim, template: str, seed: int) -> None:
    episode, start = _episode(sim, template, seed)
    label = _hindsight_ground(episode)
    # within half a 4 cm lattice step: the oracle stops over the object's centre
    assert np.linalg.norm(label - start[:2]) < 0.02, (label, start)


def test_a_push_or_a_failure_has_no_label(sim: TabletopSim) -> None:
    push, _ = _episode(sim, "push", 5)
    assert np.isnan(_hindsight_ground(push)).all()  # the object moved to its destination
    touch, _ = _episode(sim, "touch", 6)
    touch.steps[-1].success = False
    assert np.isnan(_hindsight_ground(touch)).all()


def _cells() -> torch.Tensor:
    """Three cells: the table at x = 0, an object at x = 0.5, another at x = 1."""
    points = torch.zeros(1, 3, DEPTH_CHANNELS)
    points[0, 1] = torch.tensor([0.5, 0.0, 0.02, 0.3])
    points[0, 2] = torch.tensor([1.0, 0.0, 0.02, 0.3])
    return points.reshape(1, -1)


def test_the_grounding_loss_is_the_nll_of_the_patch_nearest_the_label() -> None:
    attention = torch.tensor([[[0.2, 0.5, 0.3]]])
    # the label lies nearest the table cell, but only cells standing above it qualify
    loss = grounding_loss(attention, _cells(), torch.tensor([[0.1, 0.0]]))
    assert float(loss) == pytest.approx(-math.log(0.5))
    loss = grounding_loss(attention, _cells(), torch.tensor([[0.9, 0.0]]))
    assert float(loss) == pytest.approx(-math.log(0.3))


def test_rows_without_a_label_do_not_count() -> None:
    attention = torch.tensor([[[0.2, 0.5, 0.3]], [[0.1, 0.1, 0.8]]], requires_grad=True)
    depth = torch.cat([_cells(), _cells()])
    loss = grounding_loss(attention, depth, torch.tensor([[np.nan, np.nan], [0.9, 0.0]]))
    assert float(loss.detach()) == pytest.approx(-math.log(0.8))
    none = grounding_loss(attention, depth, torch.full((2, 2), np.nan))
    assert float(none.detach()) == 0.0
    none.backward()  # still part of the graph (DDP needs every parameter used)
    assert attention.grad is not None and float(attention.grad.abs().sum()) == 0.0
