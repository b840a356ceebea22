"""Deciding "faster" from repeated CPU-time measurements.

One run is never trusted: a candidate counts as faster only if the ratio of median times clears the
margin, the difference is larger than the timer's noise floor, and a one-sided Mann-Whitney test over
the trials says the candidate's times are lower. On identical programs this keeps false "faster"
verdicts near zero, where the paper's one-run wall-time rule called a program faster than itself in
over half of the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from statistics import median


@lru_cache(maxsize=256)
def _u_distribution(n: int, m: int) -> tuple[int, ...]:
    """Counts of each value of the Mann-Whitney U statistic under H0 (no ties), for sizes n and m."""
    # f[i][j][u]: arrangements of i x's and j y's giving U = u; built by the usual recurrence on
    # whether the largest element is an x (adds j to U) or a y.
    table: dict[tuple[int, int], list[int]] = {}
    for i in range(n + 1):
        for j in range(m + 1):
            if i == 0 or j == 0:
                table[i, j] = [1]
                continue
            a, b = table[i - 1, j], table[i, j - 1]
            dist = [0] * (i * j + 1)
            for u, c in enumerate(a):
                dist[u + j] += c
            for u, c in enumerate(b):
                dist[u] += c
            table[i, j] = dist
    return tuple(table[n, m])


def mann_whitney_less(xs: list[float], ys: list[float]) -> float:
    """One-sided p-value that ``xs`` tend to be *smaller* than ``ys`` (exact, ties counted as half).

    Args:
        xs: Samples of the supposedly smaller quantity (the candidate's times).
        ys: Samples of the other quantity (the baseline's times).

    Example:
        ```python
        >>> round(mann_whitney_less([1, 2, 3], [4, 5, 6]), 3)  # complete separation: 1 / C(6, 3)
        0.05
        ```
    """
    n, m = len(xs), len(ys)
    if n == 0 or m == 0:
        return 1.0
    # U counts pairs where x > y; small U means xs are smaller.
    u = sum((x > y) + 0.5 * (x == y) for x in xs for y in ys)
    dist = _u_distribution(n, m)
    total = sum(dist)
    return sum(c for k, c in enumerate(dist) if k <= u + 1e-9) / total


@dataclass(frozen=True)
class SpeedupDecision:
    """The outcome of comparing a candidate's timings with its baseline's."""

    speedup: float | None
    faster: bool
    p_value: float | None


def decide_faster(
    candidate: list[float],
    baseline: list[float],
    margin: float = 1.10,
    alpha: float = 0.05,
    min_time_diff_s: float = 2e-4,
) -> SpeedupDecision:
    """Whether ``candidate`` is faster than ``baseline`` by ``margin``, beyond the noise of the trials.

    Args:
        candidate: Total CPU seconds of the candidate, one value per trial.
        baseline: Total CPU seconds of the baseline, one value per trial.
        margin: Required ratio ``median(baseline) / median(candidate)``.
        alpha: Significance level of the one-sided Mann-Whitney test.
        min_time_diff_s: The medians must differ by at least this many seconds.

    Example:
        ```python
        >>> decide_faster([0.010] * 5, [0.010] * 5).faster  # the same program: never faster
        False
        >>> decide_faster([0.010, 0.011, 0.012, 0.010, 0.011], [0.020, 0.021, 0.019, 0.022, 0.020]).faster
        True
        ```
    """
    if not candidate or not baseline:
        return SpeedupDecision(None, False, None)
    c, b = median(candidate), median(baseline)
    speedup = b / c if c > 0 else (float("inf") if b > 0 else 1.0)
    p = mann_whitney_less(candidate, baseline)
    faster = speedup >= margin and (b - c) >= min_time_diff_s and p <= alpha
    return SpeedupDecision(speedup, faster, p)
