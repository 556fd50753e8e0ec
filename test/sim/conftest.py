"""Fixtures of the simulator tests: one TabletopSim per module (building one takes ~50 ms, but
each holds its own GL context once it renders)."""

from __future__ import annotations

import pytest

from safari_ros.sim import TabletopSim


@pytest.fixture(scope="module")
def sim() -> TabletopSim:
    """A train-split simulator; every test resets it first."""
    s = TabletopSim()
    yield s
    s.close()
