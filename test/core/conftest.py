"""Fixtures for the core tests (helpers live in core_helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import make_tiny_model

from safari_ros.core.model import SafariModel


@pytest.fixture
def tiny_model() -> SafariModel:
    """A fresh tiny model with the configured action set."""
    return make_tiny_model()


@pytest.fixture
def rng() -> np.random.Generator:
    """Seeded numpy generator."""
    return np.random.default_rng(0)
