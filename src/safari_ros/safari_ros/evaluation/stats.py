"""Statistics of the reports: mean with a Student-t 95% interval, Wilson's interval of a success
rate, Newcombe's intervals of a difference of success rates, learning-curve helpers.

The t quantile is computed here (regularised incomplete beta by Lentz's continued fraction,
then bisection) because SciPy is not a dependency of the project; the normal quantile comes
from the standard library (statistics.NormalDist).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

__all__ = [
    "Interval",
    "mean_ci",
    "moving_average",
    "newcombe_paired_difference",
    "newcombe_unpaired_difference",
    "steps_to_target",
    "t_cdf",
    "t_quantile",
    "wilson",
]


def _betacf(a: float, b: float, x: float, iters: int = 300, eps: float = 1e-15) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iters + 1):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p quantile of Student's t (0 < p < 1), by bisection on t_cdf."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError("need 0 < p < 1 and df > 0")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """Mean of n values with its two-sided t interval (nan bounds when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 2) -> str:
        """'mean [low, high]', or just the mean when there is no interval."""
        if self.n == 0:
            return "-"
        if math.isnan(self.low):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def contains(self, value: float) -> bool:
        """low <= value <= high (False without an interval)."""
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN (no interval) becomes null, which strict JSON readers accept."""
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {"mean": num(self.mean), "low": num(self.low), "high": num(self.high), "n": self.n}


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and t interval: mean +- t_{(1+c)/2, n-1} * s / sqrt(n), s the sample std (n-1)."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = sum(xs) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile((1.0 + confidence) / 2.0, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def steps_to_target(
    successes: Sequence[float], env_steps: Sequence[int], window: int, target: float
) -> int | None:
    """Environment steps at the first episode whose trailing success rate over a full window
    reaches `target`; None when never reached."""
    avg = moving_average(successes, window)
    for i, rate in enumerate(avg):
        if i + 1 >= window and rate >= target:
            return int(env_steps[i])
    return None


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf((1.0 + confidence) / 2.0)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Success rate successes/n with Wilson's score interval. Unlike the normal (Wald) interval
    it stays inside [0, 1] and is not empty at 0 or n successes, which small evaluations with
    rates near 0 or 1 hit all the time."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    z = _z(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # Clamp rounding only: mathematically the bounds lie in [0, 1] and bracket p.
    return Interval(p, max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)), n)


def newcombe_unpaired_difference(
    successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = 0.95
) -> Interval:
    """p_a - p_b of two independent samples with Newcombe's hybrid score interval (Newcombe 1998,
    Stat Med 17:873, method 10): each rate's Wilson interval, combined by square-and-add."""
    a, b = wilson(successes_a, n_a, confidence), wilson(successes_b, n_b, confidence)
    return _square_and_add(a, b, 0.0, n_a + n_b)


def newcombe_paired_difference(
    a: Sequence[bool], b: Sequence[bool], confidence: float = 0.95
) -> Interval:
    """p_a - p_b of paired binary outcomes (a[i] and b[i] on the same episode seed) with
    Newcombe's square-and-add interval for paired data (Newcombe 1998, Stat Med 17:2635,
    method 10; as in Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables,
    ch. 8): each rate's Wilson interval, combined with the estimated correlation phi of the two
    outcomes, so that pairs which agree (the seed decides, not the adapters) narrow the interval.
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    neither = n - both - only_a - only_b
    rows = (both + only_a, only_b + neither)  # a succeeded / failed
    cols = (both + only_b, only_a + neither)  # b succeeded / failed
    phi = 0.0
    if n and min(*rows, *cols) > 0:
        # Newcombe's phi: the cross-product difference shrunk by n/2 towards 0 when positive
        # (a continuity correction that keeps the interval from being too narrow).
        cross = both * neither - only_a * only_b
        shrunk = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
        phi = shrunk / math.sqrt(rows[0] * rows[1] * cols[0] * cols[1])
    return _square_and_add(wilson(rows[0], n, confidence), wilson(cols[0], n, confidence), phi, n)


def _square_and_add(a: Interval, b: Interval, phi: float, n: int) -> Interval:
    if a.n == 0 or b.n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    d = a.mean - b.mean
    down_a, up_a = a.mean - a.low, a.high - a.mean
    down_b, up_b = b.mean - b.low, b.high - b.mean
    low = d - math.sqrt(max(0.0, down_a**2 + up_b**2 - 2 * phi * down_a * up_b))
    high = d + math.sqrt(max(0.0, up_a**2 + down_b**2 - 2 * phi * up_a * down_b))
    return Interval(d, max(-1.0, low), min(1.0, high), n)
