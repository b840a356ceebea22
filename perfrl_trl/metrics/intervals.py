"""Confidence intervals for the code-optimisation metrics: Wilson for rates, percentile bootstrap for means."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

__all__ = ["bootstrap_ci", "wilson_interval"]


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson, 1927).

    Unlike the normal approximation it stays inside [0, 1] and behaves at 0 and n successes, which
    matters for %OPT on small evaluation sets.

    Args:
        successes (`int`): number of successes, 0 <= successes <= n.
        n (`int`): number of trials (problems), n >= 1.
        confidence (`float`, defaults to 0.95): two-sided confidence level.

    Returns:
        `(low, high)` as fractions in [0, 1].

    Example:

    ```python
    >>> lo, hi = wilson_interval(5, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.2366, 0.7634)
    ```
    """
    if n <= 0:
        raise ValueError(f"wilson_interval() needs n >= 1, got n={n}.")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval() needs 0 <= successes <= n, got successes={successes}, n={n}.")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence}.")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0/n and n/n the bound is exactly 0 or 1; the formula leaves float noise there.
    lo = 0.0 if successes == 0 else max(0.0, center - half)
    hi = 1.0 if successes == n else min(1.0, center + half)
    return lo, hi


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    weights: Sequence[bool] | np.ndarray | None = None,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of a mean, resampling problems.

    With `weights` (a mask), the statistic is the mean of `values` over the masked problems of each
    resample, which is how the optimised-only averages vary when the set of optimised problems does.

    Args:
        values (`Sequence[float]`): one value per problem.
        weights (`Sequence[bool]`, *optional*): problems that enter the mean.
        confidence (`float`, defaults to 0.95): two-sided confidence level.
        n_resamples (`int`, defaults to 1000): bootstrap resamples; 0 disables the interval.
        seed (`int`, defaults to 0): seed, so reported intervals are reproducible.

    Returns:
        `(low, high)`, or `None` when undefined (no resamples, or no masked problem at all).
    """
    x = np.asarray(values, dtype=float)
    m = np.ones_like(x, dtype=bool) if weights is None else np.asarray(weights, dtype=bool)
    if n_resamples <= 0 or x.size == 0 or not m.any():
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    counts = m[idx].sum(axis=1)
    sums = np.where(m, x, 0.0)[idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    means = means[counts > 0]
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)
