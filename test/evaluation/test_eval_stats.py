"""Statistics of the report checked against hand computations and published t-table values."""

from __future__ import annotations

import math

import pytest

from safari_ros.evaluation.stats import (
    mean_ci,
    moving_average,
    steps_to_target,
    t_cdf,
    t_quantile,
)

# t_{0.975, df} from a printed Student-t table (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2)
T_TABLE = {1: 12.706204736, 2: 4.302652730, 4: 2.776445105, 9: 2.262157163, 30: 2.042272456}


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_t_quantile_matches_the_table(df: int) -> None:
    assert t_quantile(0.975, df) == pytest.approx(T_TABLE[df], abs=1e-8)
    assert t_cdf(T_TABLE[df], df) == pytest.approx(0.975, abs=1e-9)
    assert t_quantile(0.025, df) == pytest.approx(-T_TABLE[df], abs=1e-8)


def test_mean_ci_equals_hand_computation() -> None:
    # values 1..5: mean 3, sample variance ((4+1+0+1+4)/4) = 2.5, s/sqrt(n) = sqrt(0.5)
    ci = mean_ci([1, 2, 3, 4, 5])
    half = 2.776445105 * math.sqrt(2.5) / math.sqrt(5)
    assert (ci.mean, ci.n) == (3.0, 5)
    assert ci.low == pytest.approx(3.0 - half, abs=1e-8)
    assert ci.high == pytest.approx(3.0 + half, abs=1e-8)
    # three seeds' success rates 0.2, 0.4, 0.9: mean 0.5, s = sqrt(0.13), t_{0.975,2}
    ci = mean_ci([0.2, 0.4, 0.9])
    half = 4.302652730 * math.sqrt(((0.3**2) + (0.1**2) + (0.4**2)) / 2) / math.sqrt(3)
    assert ci.mean == pytest.approx(0.5)
    assert (ci.low, ci.high) == (pytest.approx(0.5 - half, abs=1e-8),
                                 pytest.approx(0.5 + half, abs=1e-8))
    assert ci.format(2) == f"0.50 [{0.5 - half:.2f}, {0.5 + half:.2f}]"


def test_mean_ci_degenerate_cases() -> None:
    one = mean_ci([0.7])
    assert one.mean == 0.7 and math.isnan(one.low) and one.format(1) == "0.7"
    assert mean_ci([]).n == 0 and mean_ci([]).format() == "-"
    same = mean_ci([2.0, 2.0, 2.0])
    assert (same.low, same.high) == (2.0, 2.0)


def test_moving_average_and_steps_to_target() -> None:
    assert moving_average([1, 0, 1, 1], 2) == [1.0, 0.5, 0.5, 1.0]
    successes = [0, 0, 1, 0, 1, 1]
    steps = [10, 20, 25, 40, 48, 55]
    # window 2 needs two episodes: rates 0, 0.5, 0.5, 0.5, 1 from episode 2 on
    assert steps_to_target(successes, steps, window=2, target=0.5) == 25
    assert steps_to_target(successes, steps, window=2, target=1.0) == 55
    assert steps_to_target(successes, steps, window=3, target=0.9) is None
    # a full window is needed: one lucky first episode does not count
    assert steps_to_target([1, 0, 0], [5, 10, 15], window=3, target=0.5) is None


def test_violations_are_reported_for_every_cost_source_the_domain_has() -> None:
    """The tabletop's five sources always get a column; a domain with more (HRI: separation,
    person contact) gets one for each of them too, with its count."""
    from safari_ros.evaluation.loop import EpisodeRecord
    from safari_ros.evaluation.report import SOURCE_COLUMNS, aggregate, source_columns
    from safari_ros.evaluation.runner import summarise

    def episode(i: int, sources: dict[str, int]) -> EpisodeRecord:
        return EpisodeRecord(episode=i, env_steps=10 * (i + 1), steps=10, ret=0.0,
                             cost=float(sum(sources.values())), success=False,
                             interventions=0, instruction="touch the red cube",
                             cost_sources=sources)

    train = [episode(0, {"separation": 2, "keep_out": 1}), episode(1, {"separation": 1,
                                                                        "person_contact": 1})]
    metrics = summarise(train, {}, {"success_window": 2, "target_success": 0.5})
    assert metrics["train_violations_separation"] == 3.0
    assert metrics["train_violations_person_contact"] == 1.0
    assert metrics["train_violations_keep_out"] == 1.0
    assert metrics["train_violations_table_contact"] == 0.0  # reported although none fired
    agg = aggregate([{"name": "scapo", "group": "methods", "seed": 0, "status": "ok",
                      "reason": "", "metrics": metrics}])
    columns = source_columns(agg)
    assert columns[:len(SOURCE_COLUMNS)] == SOURCE_COLUMNS
    assert [h for _, h, _ in columns[len(SOURCE_COLUMNS):]] == ["separation", "person_contact"]
