"""Verified SFT pairs from generic rewrites: generated slow scripts, rewritten, kept only when the sandbox says R4.

:func:`build_rewrite_pairs` draws slow programs of many shapes (:mod:`perfrl_trl.data.shapes`), computes their
tests' expected outputs by running them in the sandbox, applies every rewrite of :mod:`perfrl_trl.data.rewrites`
that applies on its own and their composition, and judges each rewritten program against its slow program with
the executor: a pair is kept only when the rewritten program passes every test and is faster by the project's
rule (tier R4: the 1.10 margin, significantly, see docs/concepts.md). Everything else is counted in the report by
reason, so that the yield of each rewrite is visible.

Example:
    ```python
    from perfrl_trl.data.rewrite_pairs import build_rewrite_pairs

    ds, report = build_rewrite_pairs(200, seed=0)
    report["pairs"], report["per_rewrite"]["fast_input"]
    ```
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from statistics import median
from typing import TYPE_CHECKING

from ..execution import Tier
from .benchmark.build import PARTIAL_GAP
from .columns import DEFAULT_PREFIX, features, make_prompt
from .rewrites import REWRITES
from .shapes import generate_programs, with_expected_outputs

if TYPE_CHECKING:
    from collections.abc import Iterable

    import datasets

    from perfrl_trl.execution import Executor

logger = logging.getLogger(__name__)

__all__ = ["build_rewrite_pairs", "candidate_rewrites"]

_OUTCOMES = ("not_applicable", "judged", "failed_tests", "not_faster", "duplicate", "kept")


def candidate_rewrites(code: str, names: Iterable[str] | None = None, compositions: bool = True) -> dict:
    """The rewritten programs to judge for one slow program, by label.

    Args:
        code: The slow program.
        names: Rewrites to try (default all), always applied in :data:`~perfrl_trl.data.rewrites.REWRITES` order.
        compositions: When at least two rewrites apply on their own, also return their composition: every
            rewrite in turn applied to the previous result, those that do not apply at that point left out of
            it and of its label (one can start to apply: ``print_once``'s collecting loop becomes a
            comprehension).

    Returns:
        ``{label: program or None}``: each single rewrite (``None`` when it does not apply), then, with at least
        two applying, the composition labelled ``"a+b+..."`` in the order applied (it can equal a single
        rewrite's program when the others stopped applying; the caller judges each distinct program once).

    Example:
        ```python
        >>> src = "n = int(input())\\nfor i in range(n):\\n    print(i * i)\\n"
        >>> sorted(k for k, v in candidate_rewrites(src).items() if v is not None)
        ['fast_input', 'into_function', 'print_once', 'print_once+append_to_comprehension+fast_input+into_function']
        ```
    """
    chosen = _ordered(names)
    out: dict[str, str | None] = {name: REWRITES[name](code) for name in chosen}
    if compositions and sum(v is not None for v in out.values()) >= 2:
        current, used = code, []
        for name in chosen:
            new = REWRITES[name](current)
            if new is not None:
                current, used = new, [*used, name]
        if len(used) >= 2:
            out["+".join(used)] = current
    return out


def _ordered(names: Iterable[str] | None) -> list[str]:
    if names is None:
        return list(REWRITES)
    names = list(names)
    unknown = [n for n in names if n not in REWRITES]
    if unknown:
        raise KeyError(f"unknown rewrites {unknown}; known: {list(REWRITES)}")
    return [n for n in REWRITES if n in set(names)]


def build_rewrite_pairs(
    n_programs: int,
    seed: int = 0,
    executor: Executor | None = None,
    rewrites: Iterable[str] | None = None,
    progress: bool = True,
    *,
    scale: float = 1.0,
    compositions: bool = True,
    best_only: bool = False,
    shapes: Iterable[str] | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> tuple[datasets.Dataset, dict]:
    """Generate slow programs, rewrite them, and keep the (slow, rewritten) pairs the sandbox finds R4.

    Cost: each slow program runs once for its expected outputs and is timed once as the shared baseline; each
    candidate gets a correctness run and 1-6 timed runs (more when the verdict is close), plus as many paired
    baseline runs. At ``scale=1`` (slow programs of 50-300 ms a test) that was about 4 s of wall time per program
    on 2 cores (24 programs, 110 candidates, in 94 s), so about an hour per 1,000 programs.

    Args:
        n_programs: Slow programs to generate (see :func:`perfrl_trl.data.shapes.generate_programs`).
        seed: Generation seed; the same seed gives the same programs (verdicts depend on timing).
        executor: A local :class:`~perfrl_trl.execution.Executor` (default: the shared one for the default
            settings).
        rewrites: Rewrites to use (default all of :data:`~perfrl_trl.data.rewrites.REWRITES`).
        progress: Progress bars for the slow programs' runs and the judging.
        scale: Test-size multiplier (below 1 for quick runs, where timing is noisier).
        compositions: Also judge the composition of every rewrite that applies to a program.
        best_only: Keep only the fastest R4 pair of each slow program (one target per prompt), counting the
            others as ``not_best``.
        shapes: Restrict to these shapes.
        prefix: Instruction put before the slow program in ``prompt``.

    Returns:
        ``(dataset, report)``. The dataset has the core columns (``prompt``, ``input_code`` the slow program,
        ``target_code`` the rewritten one, ``problem_id`` (one per slow program, shared by its pairs),
        ``tests``) and ``family`` (``"rewrite:<label>"``), ``shape``, ``target_kind`` (``"partial"`` when
        another pair of the same program is more than 1.5 times faster, else ``"optimal"``) and ``speedup``
        (measured). The report counts:

        - ``programs``, ``programs_with_tests``, ``programs_dropped`` (by the slow program's failure);
        - ``per_rewrite[label]``: ``not_applicable``, ``judged``, ``failed_tests`` (R1/R2), ``not_faster`` (R3),
          ``duplicate`` (a composition equal to a single rewrite), ``kept`` (R4; before ``best_only``), and
          ``median_speedup`` of the kept; for a single rewrite ``not_applicable + judged + duplicate`` is
          ``programs_with_tests``, and for every label ``judged = failed_tests + not_faster + kept``;
        - ``dropped``: the same reasons summed over labels, plus ``not_best``;
        - ``failed_status``: the executor's status of the failed candidates (``wrong_answer``, ...);
        - ``per_shape[shape]``: ``programs`` and ``pairs``; ``pairs``: rows in the dataset.

    Example:
        ```python
        from perfrl_trl.data import build_rewrite_pairs

        ds, report = build_rewrite_pairs(100, seed=0, best_only=True)
        ds[0]["family"]  # e.g. 'rewrite:append_to_comprehension+fast_input+into_function'
        ```
    """
    import datasets

    from perfrl_trl.execution import get_executor

    if n_programs < 1:
        raise ValueError(f"n_programs must be at least 1, got {n_programs!r}")
    chosen = _ordered(rewrites)
    ex = executor or get_executor()
    programs = generate_programs(n_programs, seed, scale, shapes)
    rows, failed_programs = with_expected_outputs(programs, ex, progress=progress)

    per_rewrite: dict[str, Counter] = defaultdict(Counter)
    jobs, where = [], []
    for k, row in enumerate(rows):
        seen: set[str] = set()
        for label, code in candidate_rewrites(row["input_code"], chosen, compositions).items():
            if code is None:
                per_rewrite[label]["not_applicable"] += 1
            elif code in seen:
                per_rewrite[label]["duplicate"] += 1
            else:
                seen.add(code)
                per_rewrite[label]["judged"] += 1
                jobs.append((code, row["tests"], row["input_code"]))
                where.append((k, label))
    verdicts = ex.judge_many(jobs, progress="judging rewrites" if progress else False)

    failed_status: Counter = Counter()
    kept: dict[int, list[tuple[str, str, float]]] = defaultdict(list)
    speedups: dict[str, list[float]] = defaultdict(list)
    for (k, label), (code, _, _), verdict in zip(where, jobs, verdicts):
        if verdict.baseline_status not in (None, "passed"):
            # The slow program passed its own tests when they were made; failing now means a sandbox problem.
            logger.warning(
                "%s: slow program %s while judging", rows[k]["problem_id"], verdict.baseline_status
            )
        if verdict.tier <= Tier.R2:
            per_rewrite[label]["failed_tests"] += 1
            failed_status[verdict.status] += 1
        elif verdict.tier == Tier.R3:
            per_rewrite[label]["not_faster"] += 1
        else:
            per_rewrite[label]["kept"] += 1
            kept[k].append((label, code, float(verdict.speedup)))
            speedups[label].append(float(verdict.speedup))

    not_best = 0
    out_rows = []
    per_shape: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        per_shape[row["shape"]]["programs"] += 1
    for k, pairs in sorted(kept.items()):
        row = rows[k]
        best = max(s for _, _, s in pairs)
        if best_only:
            top = max(pairs, key=lambda p: p[2])
            not_best += len(pairs) - 1
            pairs = [top]
        for label, code, speedup in pairs:
            out_rows.append(
                {
                    "prompt": make_prompt(row["input_code"], prefix),
                    "input_code": row["input_code"],
                    "target_code": code,
                    "problem_id": row["problem_id"],
                    "tests": row["tests"],
                    "family": f"rewrite:{label}",
                    "shape": row["shape"],
                    "target_kind": "partial" if best > PARTIAL_GAP * speedup else "optimal",
                    "speedup": speedup,
                }
            )
            per_shape[row["shape"]]["pairs"] += 1

    schema = features(family="string", shape="string", target_kind="string", speedup="float64")
    columns = {name: [r[name] for r in out_rows] for name in schema}
    dataset = datasets.Dataset.from_dict(columns, features=schema)

    dropped = Counter()
    for counts in per_rewrite.values():
        for reason in ("not_applicable", "failed_tests", "not_faster", "duplicate"):
            dropped[reason] += counts[reason]
    dropped["not_best"] = not_best
    report = {
        "programs": n_programs,
        "programs_with_tests": len(rows),
        "programs_dropped": dict(failed_programs),
        "candidates": len(jobs),
        "pairs": len(out_rows),
        "per_rewrite": {
            label: {
                **{o: per_rewrite[label][o] for o in _OUTCOMES},
                "median_speedup": median(speedups[label]) if speedups[label] else None,
            }
            for label in sorted(per_rewrite, key=lambda lab: (lab.count("+"), lab))
        },
        "dropped": dict(dropped),
        "failed_status": dict(failed_status),
        "per_shape": {s: dict(c) for s, c in sorted(per_shape.items())},
        "settings": {
            "seed": seed,
            "scale": scale,
            "rewrites": chosen,
            "compositions": compositions,
            "best_only": best_only,
            "margin": ex.config.margin,
        },
    }
    return dataset, report
