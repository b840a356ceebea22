"""Deciding "faster" from repeated CPU-time measurements.

One run is never trusted: a candidate counts as faster only if the ratio of median times clears the
margin, the difference is larger than the timer's noise floor, and a one-sided Mann-Whitney test over
the trials says the candidate's times, scaled by the margin, are still lower: so a candidate at most
``margin`` times faster is called faster with probability at most ``alpha``. On identical programs this keeps false "faster"
verdicts near zero, where the paper's one-run wall-time rule called a program faster than itself in
over half of the pairs.

The sequential rule (``ExecutionConfig.sequential_timing``, the default) spends trials only while the
verdict is open: :func:`clearly_slower` stops a candidate far slower than its cached baseline after its
correctness run, :func:`screen` one that is clearly not faster after two measurements, and
:func:`decisive_win` grants a win too large for load to fake without more runs; :func:`paired_looks` lets
the paired confirmation stop at a first look when the win is already complete, with the significance
level split between the looks so that the chance of a false "faster" stays at most ``alpha`` (see
docs/concepts.md, "Timing and faster").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from math import comb
from statistics import median

from .tiers import DEFAULT_MARGIN


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
    margin: float = DEFAULT_MARGIN,
    alpha: float = 0.05,
    min_time_diff_s: float = 2e-4,
) -> SpeedupDecision:
    """Whether ``candidate`` is faster than ``baseline`` by ``margin``, beyond the noise of the trials.

    Faster means: the ratio of medians clears ``margin``, the medians differ by ``min_time_diff_s``, and a
    one-sided Mann-Whitney test rejects "at most ``margin`` times faster" at ``alpha`` (the candidate's
    times are scaled by ``margin`` before the rank test).

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
    # The rank test is on the candidate's times scaled by the margin, so its null hypothesis is "at most
    # `margin` times faster", not "no faster": a candidate up to `margin` times faster is called faster
    # with probability at most `alpha`, where a test of the raw times would pass one just at the margin
    # about half the time (its medians clear the margin by noise, and its ranks are all lower).
    p = mann_whitney_less([margin * t for t in candidate], baseline)
    faster = speedup >= margin and (b - c) >= min_time_diff_s and p <= alpha
    return SpeedupDecision(speedup, faster, p)


# The screen's three outcomes.
NOT_FASTER, PROMISING, OPEN = "not_faster", "promising", "open"

# After C B C, a futility probe: if even the better candidate run misses the margin against the baseline
# run between them, the confirmation ends (it can only say "not faster", so it spends no alpha).
FUTILITY_PROBE = (2, 1)

# The first look of the sequential paired confirmation: 4 candidate and 3 baseline runs alternated on
# one worker (C B C B C B C). Complete separation there has probability 1 / C(7, 3) = 1/35 under H0.
FIRST_LOOK = (4, 3)


def min_p_value(n: int, m: int) -> float:
    """The smallest one-sided Mann-Whitney p-value with ``n`` and ``m`` samples: ``1 / C(n + m, n)``.

    Example:
        ```python
        >>> round(min_p_value(4, 3), 4)
        0.0286
        ```
    """
    return 1 / comb(n + m, n)


@dataclass(frozen=True)
class Look:
    """One interim analysis of the paired confirmation: its sample sizes and the alpha spent on it."""

    n_candidate: int
    n_baseline: int
    alpha: float


def paired_looks(n_trials: int, alpha: float, sequential: bool = True) -> tuple[Look, ...]:
    """The looks of the paired confirmation, with an alpha spending that keeps the total at ``alpha``.

    Without ``sequential``: one look after ``n_trials`` runs of each program (the fixed rule). With it, a
    first look after 4 candidate and 3 baseline runs that accepts only complete separation (alpha
    ``1/35``), then a final look after ``n_trials + 1`` runs of each with the rest, ``alpha - 1/35`` (the
    extra pair buys back the power that the smaller alpha costs near the margin). By Bonferroni, a
    candidate no faster than its baseline (runs exchangeable) passes some look with probability at most
    the sum, ``alpha``. The first look is skipped when it would leave the final look unable to reach
    significance, or when ``n_trials`` is below 5.

    Args:
        n_trials: Runs of each program at the final look of the fixed rule.
        alpha: The total significance level.
        sequential: Whether to add the early look.

    Example:
        ```python
        >>> [(l.n_candidate, l.n_baseline, round(l.alpha, 4)) for l in paired_looks(5, 0.05)]
        [(4, 3, 0.0286), (6, 6, 0.0214)]
        >>> len(paired_looks(5, 0.05, sequential=False))
        1
        ```
    """
    final = Look(n_trials, n_trials, alpha)
    if not sequential or n_trials < 5:
        return (final,)
    first_alpha = min_p_value(*FIRST_LOOK)
    rest = alpha - first_alpha
    if rest < min_p_value(n_trials + 1, n_trials + 1):
        return (final,)
    return (Look(*FIRST_LOOK, first_alpha), Look(n_trials + 1, n_trials + 1, rest))


def screen(
    candidate: list[float],
    baseline: list[float],
    margin: float = DEFAULT_MARGIN,
    min_time_diff_s: float = 2e-4,
) -> str:
    """Where a candidate stands against its cached baseline after a few trials.

    ``NOT_FASTER`` when even its best trial misses the margin or the minimum difference against the
    baseline's median (more trials can only confirm a miss, unless all of them so far were slowed
    down); ``PROMISING`` when every trial clears both (worth the paired confirmation now); ``OPEN``
    otherwise. The screen never grants R4: only the paired confirmation does, so a wrong screen costs
    time or detection, never a false R4.

    Args:
        candidate: CPU seconds per trial of the candidate so far.
        baseline: CPU seconds per trial of the baseline.
        margin: Required ratio ``median(baseline) / candidate``.
        min_time_diff_s: Required difference in seconds.

    Example:
        ```python
        >>> screen([0.010, 0.011], [0.010, 0.010, 0.011])  # itself
        'not_faster'
        >>> screen([0.004, 0.005], [0.010, 0.010, 0.011])  # twice as fast on every trial
        'promising'
        ```
    """
    if not candidate or not baseline:
        return NOT_FASTER
    b = median(baseline)
    best, worst = min(candidate), max(candidate)
    if b < margin * best or b - best < min_time_diff_s:
        return NOT_FASTER
    if b >= margin * worst and b - worst >= min_time_diff_s:
        return PROMISING
    return OPEN


# A decisive win needs a baseline whose fastest trial takes at least this long: below it, the fixed cost of
# a run (fork, set-up) and its calibration dominate the measurement and ratios are not trustworthy.
DECISIVE_MIN_BASELINE_S = 0.05


def decisive_win(
    candidate: list[float],
    baseline: list[float],
    factor: float | None,
    min_baseline_s: float = DECISIVE_MIN_BASELINE_S,
) -> bool:
    """Whether a win is too large for measurement noise to have made: faster without the paired runs.

    True when the candidate has at least two trials, the baseline at least three, the baseline's fastest
    trial takes at least ``min_baseline_s``, and even the candidate's slowest trial is ``factor`` times
    below it. For a candidate that is not faster by the margin to pass, every one of those five
    measurements would have to be off by a combined factor of ``factor / margin`` (4.5x at the defaults),
    where load moves one program's CPU time by at most about 2x (docs/concepts.md).

    Args:
        candidate: CPU seconds per trial of the candidate.
        baseline: CPU seconds per trial of the (cached) baseline.
        factor: Required ratio ``min(baseline) / max(candidate)``; ``None`` never decides.
        min_baseline_s: Smallest baseline trial for which the ratio is trusted.

    Example:
        ```python
        >>> decisive_win([0.010, 0.012], [0.30, 0.31, 0.33], factor=5.0)  # 25x on every trial
        True
        >>> decisive_win([0.010, 0.080], [0.30, 0.31, 0.33], factor=5.0)  # one trial only 3.75x
        False
        >>> decisive_win([0.001, 0.001], [0.02, 0.02, 0.02], factor=5.0)  # a baseline too short to trust
        False
        ```
    """
    if factor is None or len(candidate) < 2 or len(baseline) < 3:
        return False
    fastest = min(baseline)
    return fastest >= min_baseline_s and factor * max(candidate) <= fastest


# A candidate whose correctness run alone took this many times the baseline's slowest trial stops there.
CLEARLY_SLOWER_FACTOR = 2.0


def clearly_slower(
    candidate: list[float], baseline: list[float], factor: float = CLEARLY_SLOWER_FACTOR
) -> bool:
    """Whether a candidate is so much slower than its baseline that one more trial cannot matter.

    True when every candidate trial so far (its correctness run, as a rule) took at least ``factor`` times
    the baseline's slowest trial. This only ever ends a candidate at "not faster": a candidate truly 1.1x
    faster would need its run to be off by ``factor * 1.1`` (2.2x) against every one of the baseline's,
    more than the largest spread measured between two runs of one program (2.0, docs/concepts.md).

    Example:
        ```python
        >>> clearly_slower([0.9], [0.30, 0.31, 0.33])
        True
        >>> clearly_slower([0.4], [0.30, 0.31, 0.33])  # slower, but within the noise: time it again
        False
        ```
    """
    if not candidate or not baseline:
        return False
    return min(candidate) >= factor * max(baseline)


def confirm_paired(
    run_candidate: Callable[[], float],
    run_baseline: Callable[[], float],
    n_trials: int = 5,
    margin: float = DEFAULT_MARGIN,
    alpha: float = 0.05,
    min_time_diff_s: float = 2e-4,
    sequential: bool = True,
) -> tuple[list[float], list[float], SpeedupDecision]:
    """The paired confirmation: candidate and baseline runs alternated, decided at each of :func:`paired_looks`.

    Runs are taken in the order C B C B ..., so drift over the confirmation hits both programs alike. A
    look grants "faster" at its own share of alpha. With ``sequential``, the confirmation also ends as
    soon as even the best candidate run misses the margin against the baseline's median, probed after
    C B C and at every look: the win is not there. These stops only ever say "not faster".

    Args:
        run_candidate: Runs the candidate once over all tests; returns its CPU seconds.
        run_baseline: The same for the baseline.
        n_trials: Runs of each program at the final look.
        margin: Required ratio of medians, baseline over candidate.
        alpha: Total significance level, split over the looks.
        min_time_diff_s: Required difference of the medians, in seconds.
        sequential: Whether to add the early look (``False``: one look after ``n_trials`` each).

    Returns:
        The candidate's and the baseline's runs, and the decision of the last look taken.

    Example:
        ```python
        >>> fast, slow = iter([0.010, 0.011, 0.009, 0.010, 0.012]), iter([0.030, 0.031, 0.029, 0.030, 0.032])
        >>> cand, base, decision = confirm_paired(lambda: next(fast), lambda: next(slow))
        >>> len(cand), len(base), decision.faster  # stopped at the first look: complete separation
        (4, 3, True)
        ```
    """
    cand: list[float] = []
    base: list[float] = []
    decision = SpeedupDecision(None, False, None)
    for look in paired_looks(n_trials, alpha, sequential):
        while len(cand) < look.n_candidate or len(base) < look.n_baseline:
            take_cand = len(cand) < look.n_candidate and (
                len(cand) <= len(base) or len(base) >= look.n_baseline
            )
            if take_cand:
                cand.append(run_candidate())
            else:
                base.append(run_baseline())
            probe = sequential and (len(cand), len(base)) == FUTILITY_PROBE
            if probe and screen(cand, base, margin, min_time_diff_s) == NOT_FASTER:
                return cand, base, decide_faster(cand, base, margin, look.alpha, min_time_diff_s)
        decision = decide_faster(cand, base, margin, look.alpha, min_time_diff_s)
        if decision.faster or screen(cand, base, margin, min_time_diff_s) == NOT_FASTER:
            break
    return cand, base, decision


@dataclass(frozen=True)
class TimingRule:
    """The settings a timing rule reads (the timing fields of ``ExecutionConfig``)."""

    n_trials: int = 5
    margin: float = DEFAULT_MARGIN
    alpha: float = 0.05
    min_time_diff_s: float = 2e-4
    decisive_speedup: float | None = 5.0

    def confirm(
        self, run_candidate: Callable[[], float], run_baseline: Callable[[], float], sequential: bool
    ) -> tuple[list[float], list[float], SpeedupDecision]:
        """:func:`confirm_paired` with these settings."""
        return confirm_paired(
            run_candidate,
            run_baseline,
            self.n_trials,
            self.margin,
            self.alpha,
            self.min_time_diff_s,
            sequential,
        )

    def decide(
        self, candidate: list[float], baseline: list[float], alpha: float | None = None
    ) -> SpeedupDecision:
        return decide_faster(
            candidate, baseline, self.margin, self.alpha if alpha is None else alpha, self.min_time_diff_s
        )


@dataclass(frozen=True)
class TimingOutcome:
    """What a rule measured and decided: the values the decision rests on, of both programs."""

    trials: list[float]
    baseline_trials: list[float]
    decision: SpeedupDecision


def fixed_rule(
    trials: list[float],
    baseline: list[float],
    run_candidate: Callable[[], float],
    run_baseline: Callable[[], float],
    rule: TimingRule,
) -> TimingOutcome:
    """The fixed rule: ``n_trials`` values against the cached baseline; an apparent win is re-measured paired.

    The cached baseline was timed earlier, under whatever load the machine had then, so a win is only
    confirmed on ``n_trials`` runs of each program alternated on one worker (``run_*``).

    Args:
        trials: The candidate's ``n_trials`` timed values.
        baseline: The cached baseline's values.
        run_candidate: One more run of the candidate over all tests, on the worker the paired runs use.
        run_baseline: The same for the baseline.
        rule: The timing settings.
    """
    decision = rule.decide(trials, baseline)
    if not decision.faster:
        return TimingOutcome(trials, baseline, decision)
    return TimingOutcome(*rule.confirm(run_candidate, run_baseline, sequential=False))


def sequential_rule(
    trials: list[float],
    baseline: list[float],
    time_once: Callable[[], float],
    run_candidate: Callable[[], float],
    run_baseline: Callable[[], float],
    rule: TimingRule,
) -> TimingOutcome:
    """The sequential rule: trials only while the verdict is open (``ExecutionConfig.sequential_timing``).

    A candidate whose first value (its correctness run) took twice the baseline's slowest stops there. Else
    one timed run follows, and a decisive win or a clear miss stops; anything else (a clear win, or load
    drift between the cached baseline and now) goes to :func:`confirm_paired`, whose first probe (C B C)
    settles a drift-made "maybe" for three runs.

    Args:
        trials: The candidate's values so far (its correctness run's CPU time); the timed run is appended
            to it, so a caller whose run fails part-way still has what was measured.
        baseline: The cached baseline's values.
        time_once: One timed run of the candidate (on any worker).
        run_candidate: One run of the candidate, on the worker the paired runs use.
        run_baseline: The same for the baseline.
        rule: The timing settings.

    Example:
        ```python
        >>> rule = TimingRule()
        >>> sequential_rule([0.9], [0.30, 0.31, 0.33], None, None, None, rule).decision.faster  # far slower
        False
        >>> sequential_rule([0.010], [0.30, 0.31, 0.33], lambda: 0.011, None, None, rule).decision.faster
        True
        ```
    """
    if clearly_slower(trials, baseline):
        # Another run of a slow program cannot make it faster (and one value is never significant).
        return TimingOutcome(trials, baseline, rule.decide(trials, baseline))
    trials.append(time_once())
    if decisive_win(trials, baseline, rule.decisive_speedup):
        # Far beyond what load does to CPU time: paired runs of a slow baseline would only agree.
        return TimingOutcome(trials, baseline, SpeedupDecision(median(baseline) / median(trials), True, None))
    if screen(trials, baseline, rule.margin, rule.min_time_diff_s) == NOT_FASTER:
        # Its best trial already misses, so the medians do too: never "faster" here.
        return TimingOutcome(trials, baseline, rule.decide(trials, baseline))
    return TimingOutcome(*rule.confirm(run_candidate, run_baseline, sequential=True))
