"""The arithmetic of the code-optimisation metrics (%OPT, SP, RTR, compile and pass rates).

This module is the single implementation shared by the `perfrl/speedup` evaluate module and by the
trainer's evaluation loop. It is deliberately pure: plain Python and numpy, no `evaluate`, no
execution, so that it can be unit-tested against hand computations and reused by any harness.

Definitions (o = runtime of the slow input program, n = runtime of the candidate, per problem):

- **%OPT** (`percent_optimized`): share of problems whose best correct candidate satisfies
  `o / n >= margin` (default 1.10, i.e. at least 10% faster). Source: PIE, Shypula et al., ICLR 2024,
  "Learning Performance-Improving Code Edits" (arXiv 2302.07867), Sec. "Metrics"; the same
  definition is used by PerfRL (Duan et al., 2023, arXiv 2312.05657). A speedup exactly equal to the
  margin counts as optimised (`>=`, with a 1e-9 relative tolerance so that e.g. 0.11 s -> 0.10 s,
  whose float ratio is 1.0999999999999999, is not lost to rounding).
- **SP, PIE convention** (`speedup`): mean over *all* problems of `max(o / n, 1.0)` for a correct
  candidate and 1.0 for a problem without one: PIE (ICLR 2024) gives incorrect or slower generations
  a speedup of 1.0, since falling back to the input program is never slower than the input.
- **SP, PerfRL / PIE-v1 convention** (`speedup_optimized_only`): mean of `o / n` over the optimised
  problems only (those counted in %OPT). PerfRL takes %OPT, SP and RTR from the first version of PIE
  and its tables (SP > 2 with single-digit %OPT) are only consistent with averaging over optimised
  programs; neither paper states the averaging set in a formula, so this is our reading. Both
  conventions are always reported, under distinct names, never mixed.
- **RTR** (`runtime_reduction_optimized_only`): mean of `(o - n) / o * 100` over the optimised
  problems (the paper's averaging, same set as `speedup_optimized_only`); `runtime_reduction` is the
  same quantity over all problems from the PIE-clipped speedup (0 for a failed or slower problem),
  the RTR analogue of `speedup`.
- **Compile rate / pass rate** (`percent_compiled`, `percent_passed`): share of problems with at
  least one candidate that compiles / passes every test (for k = 1 this is PIE's %Correct).
- Confidence intervals: Wilson score intervals for the three rates (Wilson, 1927, JASA 22:209),
  percentile bootstrap over problems for the four means. Every interval comes with the number of
  problems `n_samples`, which downstream tables must report alongside.

Best-of-k (PIE's "Best@k"): a problem with k candidates is scored by its best candidate: an optimised
one if any, otherwise the correct one with the largest speedup, otherwise a failed one (the problem
still counts as compiled if any candidate compiled).

A problem with a correct candidate but no baseline runtime (the slow input itself failed or timed
out) stays in every denominator but cannot be optimised; `n_baseline_missing` counts such problems.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..execution.tiers import DEFAULT_MARGIN
from .intervals import bootstrap_ci, wilson_interval

__all__ = [
    "DEFAULT_MARGIN",
    "SampleResult",
    "aggregate",
    "best_of_k",
    "results_from_runtimes",
]

# Relative slack on the margin comparison: ratios of decimal timings are not exact in binary floats.
_TIE_RTOL = 1e-9


def _check_time(value: Any, field: str) -> float | None:
    """Normalise a runtime: None and NaN mean 'not measured'; anything else must be finite and > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"`{field}` must be a number of seconds or None, got {type(value).__name__}: {value!r}"
        )
    value = float(value)
    if math.isnan(value):
        return None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"`{field}` must be a positive, finite runtime (or None when not measured), got {value}"
        )
    return value


def _measured(value: float | None) -> float | None:
    # A harness can report 0.0 s below its clock resolution: that is 'not measurable', not an error.
    return value if value is not None and value > 0 else None


@dataclass(frozen=True)
class SampleResult:
    """Outcome of one candidate program (or of one problem once best-of-k has been applied).

    Args:
        compiled (`bool` or `None`):
            Whether the candidate compiles (`compile()` succeeded). `None` when unknown, e.g. with
            precomputed runtimes from a harness that does not report it.
        passed (`bool`):
            Whether the candidate ran and matched the expected output on every test.
        old_time (`float`, *optional*):
            Runtime of the slow input program (the baseline), in seconds. `None` if not measured.
        new_time (`float`, *optional*):
            Runtime of the candidate, in seconds. Only meaningful when `passed`.
        significant (`bool`, *optional*):
            Whether the difference between the two runtimes is statistically significant, when the
            harness tested it (the project's executor does). `False` vetoes %OPT; `None` means untested.
        status (`str`, *optional*):
            Free-form status from the harness (e.g. `"timeout"`), carried into per-sample details.
        candidate (`int`, *optional*):
            Index of the chosen candidate once `best_of_k` has picked one.

    Example:

    ```python
    >>> r = SampleResult(compiled=True, passed=True, old_time=2.0, new_time=1.0)
    >>> r.speedup, r.is_optimized(1.10)
    (2.0, True)
    ```
    """

    compiled: bool | None
    passed: bool
    old_time: float | None = None
    new_time: float | None = None
    significant: bool | None = None
    status: str | None = None
    candidate: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "old_time", _check_time(self.old_time, "old_time"))
        object.__setattr__(self, "new_time", _check_time(self.new_time, "new_time"))
        object.__setattr__(self, "passed", bool(self.passed))
        if self.passed and self.compiled is False:
            raise ValueError("A SampleResult cannot have passed=True and compiled=False.")
        if self.passed and self.compiled is None:
            # Passing every test implies it compiled; recording it keeps the compile rate defined.
            object.__setattr__(self, "compiled", True)

    @property
    def speedup(self) -> float | None:
        """`old_time / new_time` for a correct candidate with both runtimes, else `None`."""
        if not self.passed or self.old_time is None or self.new_time is None:
            return None
        return self.old_time / self.new_time

    def beats(self, target: SampleResult, margin: float = DEFAULT_MARGIN) -> bool | None:
        """Passed and ran faster than `target` by `margin`; `None` when `target` did not pass or was not timed.

        Example:
        ```python
        >>> fast = SampleResult(compiled=True, passed=True, old_time=2.0, new_time=0.5)
        >>> fast.beats(SampleResult(compiled=True, passed=True, old_time=2.0, new_time=1.0))
        True
        ```
        """
        if not target.passed or target.new_time is None:
            return None
        return bool(self.passed and self.new_time is not None and self.new_time * margin < target.new_time)

    def is_optimized(self, margin: float = DEFAULT_MARGIN) -> bool:
        """Correct, at least `margin` times faster (ties count), and not flagged insignificant."""
        s = self.speedup
        return s is not None and s >= margin * (1.0 - _TIE_RTOL) and self.significant is not False

    @classmethod
    def from_verdict(
        cls, verdict: Any, *, margin: float = DEFAULT_MARGIN, candidate: int | None = None
    ) -> SampleResult:
        """Build a result from a `perfrl_trl.execution.Verdict` (duck-typed, so no import is needed).

        The executor's `faster` flag already combines `speedup >= margin` with its significance test;
        `margin` must be the margin the executor ran with, so that the flag can be read as the
        significance verdict for speedups at or above the margin.
        """
        speedup = getattr(verdict, "speedup", None)
        significant = getattr(verdict, "significant", None)
        if significant is None and speedup is not None and speedup >= margin * (1.0 - _TIE_RTOL):
            significant = bool(getattr(verdict, "faster", False))
        status = getattr(verdict, "status", None)
        baseline_status = getattr(verdict, "baseline_status", None)
        if baseline_status not in (None, "passed"):
            # The candidate cannot be optimised if the baseline itself failed: say why in the details.
            status = f"{status}; baseline {baseline_status}"
        return cls(
            compiled=bool(verdict.compiled),
            passed=bool(verdict.passed),
            old_time=_measured(getattr(verdict, "baseline_runtime", None)),
            new_time=_measured(getattr(verdict, "runtime", None)),
            significant=significant,
            status=status,
            candidate=candidate,
        )


def best_of_k(candidates: Sequence[SampleResult], margin: float = DEFAULT_MARGIN) -> SampleResult:
    """Reduce the k candidates of one problem to the one that scores it (PIE's Best@k).

    The pick is: an optimised candidate with the largest speedup; else the correct candidate with the
    largest speedup (or the first correct one when none was timed); else the first candidate, marked
    compiled if any candidate compiled. Ties go to the lowest index, so the result is deterministic.

    Args:
        candidates (`Sequence[SampleResult]`): the k >= 1 candidates of one problem.
        margin (`float`, defaults to 1.10): the %OPT margin.

    Returns:
        `SampleResult` with `candidate` set to the chosen index (`None` when none passed).

    Example:

    ```python
    >>> a = SampleResult(compiled=True, passed=False, old_time=1.0)
    >>> b = SampleResult(compiled=True, passed=True, old_time=1.0, new_time=0.5)
    >>> best_of_k([a, b]).candidate
    1
    ```
    """
    if len(candidates) == 0:
        raise ValueError("best_of_k() needs at least one candidate per problem; got an empty list.")
    passing = [(i, c) for i, c in enumerate(candidates) if c.passed]
    if passing:

        def rank(item: tuple[int, SampleResult]) -> tuple[bool, float, int]:
            i, c = item
            s = c.speedup
            return (c.is_optimized(margin), -math.inf if s is None else s, -i)

        i, chosen = max(passing, key=rank)
        return _replace(chosen, candidate=i)
    compiled_flags = [c.compiled for c in candidates]
    compiled = True if any(compiled_flags) else (None if None in compiled_flags else False)
    first = candidates[0]
    return SampleResult(
        compiled=compiled,
        passed=False,
        old_time=first.old_time,
        new_time=None,
        significant=None,
        status=first.status,
        candidate=None,
    )


def _replace(result: SampleResult, **changes: Any) -> SampleResult:
    return SampleResult(**{**asdict(result), **changes})


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def aggregate(
    results: Sequence[SampleResult | Sequence[SampleResult]],
    margin: float = DEFAULT_MARGIN,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
    return_details: bool = False,
) -> dict[str, Any]:
    """Compute %OPT, SP (both conventions), RTR, compile and pass rates, with confidence intervals.

    See the module docstring for each definition and its source.

    Args:
        results (`Sequence[SampleResult | Sequence[SampleResult]]`):
            One entry per problem: a `SampleResult`, or the list of its k candidates (best-of-k).
        margin (`float`, defaults to 1.10): minimum speedup `o / n` for %OPT (ties count).
        confidence (`float`, defaults to 0.95): level of every interval.
        n_bootstrap (`int`, defaults to 1000): bootstrap resamples for the means; 0 skips them.
        seed (`int`, defaults to 0): bootstrap seed.
        return_details (`bool`, defaults to `False`): also return one dict per problem.

    Returns:
        `dict` with `percent_optimized`, `speedup`, `speedup_optimized_only`, `runtime_reduction`,
        `runtime_reduction_optimized_only`, `percent_compiled` (None if any compile flag is unknown),
        `percent_passed`, an `*_ci` pair for each, the counts `n_samples`, `n_candidates`,
        `n_optimized`, `n_passed`, `n_compiled`, `n_baseline_missing`, the `margin` and `confidence`,
        and `details` if asked. Rates and RTR are percentages; optimised-only means are `None` when no
        problem is optimised.

    Example:

    ```python
    >>> out = aggregate([
    ...     SampleResult(compiled=True, passed=True, old_time=2.0, new_time=1.0),   # 2x: optimised
    ...     SampleResult(compiled=True, passed=False, old_time=1.0),                # wrong answer
    ... ], n_bootstrap=0)
    >>> out["percent_optimized"], out["speedup"], out["speedup_optimized_only"]
    (50.0, 1.5, 2.0)
    ```
    """
    if isinstance(results, (str, bytes, Mapping)) or not isinstance(results, Sequence):
        raise TypeError(
            f"`results` must be a sequence of SampleResult (or of lists of them), got {type(results).__name__}."
        )
    if len(results) == 0:
        raise ValueError("aggregate() needs at least one sample; got an empty `results` list.")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 1.0):
        raise ValueError(f"`margin` must be a finite number >= 1.0 (1.10 means 10% faster), got {margin!r}.")

    best: list[SampleResult] = []
    n_candidates = 0
    for i, entry in enumerate(results):
        if isinstance(entry, SampleResult):
            best.append(entry)
            n_candidates += 1
        elif isinstance(entry, Sequence) and all(isinstance(c, SampleResult) for c in entry):
            if len(entry) == 0:
                raise ValueError(f"`results[{i}]` is an empty list of candidates; every problem needs >= 1.")
            best.append(best_of_k(entry, margin))
            n_candidates += len(entry)
        else:
            raise TypeError(
                f"`results[{i}]` must be a SampleResult or a list of them, got {type(entry).__name__}."
            )

    n = len(best)
    optimized = np.array([r.is_optimized(margin) for r in best], dtype=bool)
    passed = np.array([r.passed for r in best], dtype=bool)
    compiled_flags = [r.compiled for r in best]
    raw = np.array([np.nan if r.speedup is None else r.speedup for r in best], dtype=float)

    # PIE fallback: incorrect, untimed or slower problems fall back to the input program (1.0x, 0%).
    sp_all = np.maximum(np.nan_to_num(raw, nan=1.0), 1.0)
    rtr_all = (1.0 - 1.0 / sp_all) * 100.0
    rtr_raw = (1.0 - 1.0 / np.where(np.isnan(raw), 1.0, raw)) * 100.0

    n_opt, n_pass = int(optimized.sum()), int(passed.sum())
    compile_known = None not in compiled_flags
    n_comp = sum(bool(c) for c in compiled_flags)

    def pct_ci(k: int) -> tuple[float, float]:
        lo, hi = wilson_interval(k, n, confidence)
        return 100.0 * lo, 100.0 * hi

    def boot(values: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float] | None:
        return bootstrap_ci(values, mask, confidence=confidence, n_resamples=n_bootstrap, seed=seed)

    out: dict[str, Any] = {
        "percent_optimized": 100.0 * n_opt / n,
        "percent_optimized_ci": pct_ci(n_opt),
        "speedup": float(sp_all.mean()),
        "speedup_ci": boot(sp_all),
        "speedup_optimized_only": _mean_or_none(raw[optimized]),
        "speedup_optimized_only_ci": boot(np.nan_to_num(raw, nan=1.0), optimized),
        "runtime_reduction": float(rtr_all.mean()),
        "runtime_reduction_ci": boot(rtr_all),
        "runtime_reduction_optimized_only": _mean_or_none(rtr_raw[optimized]),
        "runtime_reduction_optimized_only_ci": boot(rtr_raw, optimized),
        "percent_compiled": 100.0 * n_comp / n if compile_known else None,
        "percent_compiled_ci": pct_ci(n_comp) if compile_known else None,
        "percent_passed": 100.0 * n_pass / n,
        "percent_passed_ci": pct_ci(n_pass),
        "n_samples": n,
        "n_candidates": n_candidates,
        "n_optimized": n_opt,
        "n_passed": n_pass,
        "n_compiled": n_comp if compile_known else None,
        # Only correct candidates get their baseline timed, so only they can miss one.
        "n_baseline_missing": sum(r.passed and r.old_time is None for r in best),
        "margin": float(margin),
        "confidence": float(confidence),
    }
    if return_details:
        out["details"] = [
            {
                "index": i,
                "compiled": r.compiled,
                "passed": r.passed,
                "optimized": bool(optimized[i]),
                "speedup": r.speedup,
                "old_time": r.old_time,
                "new_time": r.new_time,
                "significant": r.significant,
                "status": r.status,
                "candidate": r.candidate,
            }
            for i, r in enumerate(best)
        ]
    return out


def results_from_runtimes(
    new_times: Sequence[float | Sequence[float | None] | None],
    old_times: Sequence[float | None],
    compiled: Sequence[bool | Sequence[bool | None] | None] | None = None,
) -> list[SampleResult | list[SampleResult]]:
    """Turn precomputed runtimes into results for `aggregate`, for users with their own harness.

    A candidate runtime of `None` (or NaN) means the candidate failed (did not compile, crashed,
    timed out or gave a wrong answer); any number means it passed every test in that many seconds.

    Args:
        new_times (`Sequence[float | None | Sequence[float | None]]`):
            Per problem, the candidate's runtime, or the list of the k candidates' runtimes.
        old_times (`Sequence[float | None]`): per problem, the slow input program's runtime.
        compiled (`Sequence[bool | Sequence[bool]]`, *optional*):
            Per problem (and per candidate), whether it compiled; mirrors `new_times`. Without it the
            compile rate of failed candidates is unknown and reported as `None`.

    Returns:
        `list` with one `SampleResult` (or list of them, for best-of-k) per problem.

    Example:

    ```python
    >>> res = results_from_runtimes(new_times=[[None, 0.5], 2.0], old_times=[1.0, 1.0])
    >>> aggregate(res, n_bootstrap=0)["percent_optimized"]
    50.0
    ```
    """
    if len(new_times) != len(old_times):
        raise ValueError(
            f"`new_times` has {len(new_times)} entries but `old_times` has {len(old_times)}; "
            "they must align problem by problem."
        )
    if compiled is not None and len(compiled) != len(new_times):
        raise ValueError(f"`compiled` has {len(compiled)} entries but `new_times` has {len(new_times)}.")
    out: list[SampleResult | list[SampleResult]] = []
    for i, (new, old) in enumerate(zip(new_times, old_times)):
        old = _check_time(old, f"old_times[{i}]")
        comp = None if compiled is None else compiled[i]
        if isinstance(new, Sequence) and not isinstance(new, str):
            if len(new) == 1 and comp is not None and not isinstance(comp, Sequence):
                comp = [comp]  # the evaluate module wraps a lone candidate in a list; its flag follows
            if comp is not None and not (isinstance(comp, Sequence) and len(comp) == len(new)):
                raise ValueError(
                    f"`compiled[{i}]` must list one flag per candidate of `new_times[{i}]` ({len(new)})."
                )
            out.append(
                [
                    _from_time(t, old, None if comp is None else comp[j], f"new_times[{i}][{j}]")
                    for j, t in enumerate(new)
                ]
            )
        else:
            if isinstance(comp, Sequence):
                raise ValueError(f"`compiled[{i}]` is a list but `new_times[{i}]` is a single runtime.")
            out.append(_from_time(new, old, comp, f"new_times[{i}]"))
    return out


def _from_time(new: Any, old: float | None, compiled: bool | None, field: str) -> SampleResult:
    t = _check_time(new, field)
    passed = t is not None
    return SampleResult(compiled=True if passed else compiled, passed=passed, old_time=old, new_time=t)
