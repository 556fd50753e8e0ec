"""A short run of bench/bench_shield.py: random and adversarial proposals, malformed input mixed
in, every executed motion re-checked with MuJoCo's model of the simulated arm (the long run of
100,000 proposals is the benchmark)."""

from __future__ import annotations

import sys

from support import REPO

sys.path.insert(0, str(REPO / "bench"))
import bench_shield

PROPOSALS = 300


def test_nothing_executed_breaks_a_hard_limit(record_property):
    figures = bench_shield.run(PROPOSALS, seed=1, quiet=True)
    print(bench_shield.report(figures, 0.0))
    record_property("proposals", figures.proposals)
    record_property("executed", figures.executed)
    assert figures.proposals == PROPOSALS
    assert sum(figures.violations.values()) == 0, figures.examples
    assert figures.bad_input_executed == 0
    # Both outcomes happened often enough for the property to mean something.
    assert figures.executed > 30 and figures.stops > 30
    assert figures.backups["home executed"] > 0
    assert sum(figures.malformed.values()) > 30
