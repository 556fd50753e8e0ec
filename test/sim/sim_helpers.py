"""Helpers shared by the simulator tests."""

from __future__ import annotations

from safari_ros.sim import TabletopSim


def action(sim: TabletopSim, name: str) -> int:
    """Index of the configured action called name."""
    return next(a.index for a in sim.actions if a.name == name)
