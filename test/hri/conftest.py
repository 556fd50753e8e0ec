"""Fixtures of the HRI tests: config/hri.yaml loaded, and one HRI simulator per module."""

from __future__ import annotations

import pytest
from support import REPO

from safari_ros.config import load_config
from safari_ros.sim import TabletopSim

HRI_CONFIG = REPO / "config" / "hri.yaml"


@pytest.fixture(scope="module")
def cfg() -> dict:
    """config/hri.yaml through its `extends` overlay (tests deep-copy before changing it)."""
    return load_config(HRI_CONFIG)


@pytest.fixture(scope="module")
def hri_sim(cfg) -> TabletopSim:
    """A simulator of the HRI domain; every test resets it first."""
    s = TabletopSim(cfg)
    yield s
    s.close()
