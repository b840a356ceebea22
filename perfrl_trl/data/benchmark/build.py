"""Generate benchmark problems, optionally validate them with the sandboxed executor, and split them."""

from __future__ import annotations

import builtins
import io
import logging
import random
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ...execution import Tier
from ..columns import DEFAULT_PREFIX, features, make_prompt
from ._registry import FAMILIES, Ctx

if TYPE_CHECKING:
    import datasets

    from perfrl_trl.execution import Executor

logger = logging.getLogger(__name__)

DEFAULT_HELDOUT_FAMILIES: tuple[str, ...] = ("running_median", "anagram_pairs", "bit_count", "matrix_mult")
TARGET_KINDS = ("optimal", "partial", "marginal")
# A target counts as "partial" (rather than "optimal") when the best solution is this much faster than it.
PARTIAL_GAP = 1.5
_MAX_ATTEMPTS = 20
_MARGINAL_P = 0.15


def run_reference(code: str, stdin: str) -> str:
    """Run a (fast, trusted, generated) program in this process and return what it prints.

    Used to compute expected outputs from the best-known solution without paying an interpreter start-up.
    It swaps ``sys.stdin`` / ``sys.stdout`` for the duration of the call, so it is not thread-safe. Never use it
    on untrusted code: that is what :mod:`perfrl_trl.execution` is for.

    Args:
        code: Program source reading ``sys.stdin`` / ``input()`` and writing ``sys.stdout`` / ``print``.
        stdin: The test input.
    """
    fin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    raw = io.BytesIO()
    fout = io.TextIOWrapper(raw, encoding="utf-8", newline="\n", write_through=True)
    saved = sys.stdin, sys.stdout, sys.getrecursionlimit()
    sys.stdin, sys.stdout = fin, fout
    try:
        exec(compile(code, "<benchmark>", "exec"), {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit:
        pass
    finally:
        fout.flush()
        sys.stdin, sys.stdout = saved[0], saved[1]
        sys.setrecursionlimit(saved[2])
    return raw.getvalue().decode()


def _make_problem(name: str, index: int, seed: int, seen: set[str], outputs: bool = True) -> dict:
    fam = FAMILIES[name]
    for attempt in range(_MAX_ATTEMPTS):
        rng = random.Random(f"perfrl-bench:{seed}:{name}:{index}:{attempt}")
        ctx = Ctx(rng)
        var = fam.fn(ctx)
        slow = var.slow.render()
        if slow in seen:
            continue
        best = var.best.render()
        if var.target is not None:
            target, kind = var.target.render(), var.target_kind
        elif ctx.style.wrap == "script" and not var.slow.defs and rng.random() < _MARGINAL_P:
            # Generic micro-optimisation: the same code moved into a function (locals instead of globals).
            target, kind = var.slow.render(wrap="main"), "marginal"
        else:
            target, kind = best, "optimal"
        seen.add(slow)
        tests = [
            {"input": inp, "output": run_reference(best, inp) if outputs else None} for inp in var.inputs
        ]
        return {
            "problem_id": f"bench/{name}/{index}",
            "family": name,
            "category": fam.category,
            "input_code": slow,
            "target_code": target,
            "best_code": best,
            "tests": tests,
            "target_kind": kind,
            "target_speedup": None,
            "best_speedup": None,
        }
    raise RuntimeError(
        f"family {name!r} produced no new problem for index {index} in {_MAX_ATTEMPTS} attempts"
    )


def generate_problems(
    n_per_family: int = 20, seed: int = 0, families: Iterable[str] | None = None, outputs: bool = True
) -> list[dict]:
    """Generate problems deterministically (no timing, no subprocesses).

    Args:
        n_per_family: Distinct problems per family.
        seed: Changes every problem (names, style, sizes, data).
        families: Restrict to these family names (default: all, in registration order).
        outputs: Compute the tests' expected outputs. ``False`` leaves each ``output`` None, for callers that
            need only the programs (about 3x faster); the programs are the same either way.

    Returns:
        A list of dicts with keys ``problem_id``, ``family``, ``category``, ``input_code`` (slow), ``target_code``,
        ``best_code``, ``tests`` (``[{"input", "output"}]``, outputs computed by running ``best_code``),
        ``target_kind`` (heuristic until validated) and ``target_speedup`` / ``best_speedup`` (``None`` until
        validated).
    """
    names = list(FAMILIES) if families is None else list(families)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise KeyError(f"unknown benchmark families {unknown}; known: {sorted(FAMILIES)}")
    problems = []
    for name in names:
        seen: set[str] = set()
        problems.extend(_make_problem(name, i, seed, seen, outputs) for i in range(n_per_family))
    return problems


def validate_problems(
    problems: Sequence[dict], executor: Executor | None = None, progress: bool = False
) -> list[dict]:
    """Judge each problem's target and best solution against its slow program with the real executor.

    Problems whose slow program fails its own tests, or whose best solution does not pass and beat the slow
    one (tier R4), are dropped. ``best_speedup`` / ``target_speedup`` are filled from the measurement and
    ``target_kind`` is re-labelled: "marginal" if the target is not R4, "partial" if the best solution is more
    than ``PARTIAL_GAP`` times faster than the target, else "optimal".

    Args:
        problems: Output of :func:`generate_problems`.
        executor: A :class:`perfrl_trl.execution.Executor`; defaults to the shared one.
        progress: Show a progress bar.

    Returns:
        New dicts for the problems that survived.
    """
    from perfrl_trl.execution import get_executor

    ex = executor or get_executor()
    jobs, where = [], []
    for k, p in enumerate(problems):
        jobs.append((p["best_code"], p["tests"], p["input_code"]))
        where.append((k, "best"))
        if p["target_code"] != p["best_code"]:
            jobs.append((p["target_code"], p["tests"], p["input_code"]))
            where.append((k, "target"))
    # The slow program is checked (correctness run) and timed once per problem as the shared baseline.
    results = ex.judge_many(jobs, progress="benchmark validation" if progress else False)
    verdicts = dict(zip(where, results))

    kept = []
    for k, p in enumerate(problems):
        best_v = verdicts[(k, "best")]
        if best_v.passed and best_v.baseline_status not in (None, "passed"):
            logger.warning("dropping %s: slow program %s", p["problem_id"], best_v.baseline_status)
            continue
        if best_v.tier < Tier.R4:
            logger.info(
                "dropping %s: best solution is %s (%s)", p["problem_id"], best_v.tier_name, best_v.status
            )
            continue
        q = dict(p)
        q["best_speedup"] = float(best_v.speedup)
        if p["target_code"] == p["best_code"]:
            q["target_speedup"], q["target_kind"] = q["best_speedup"], "optimal"
        else:
            tv = verdicts[(k, "target")]
            if not tv.passed:
                logger.warning("dropping %s: target %s (%s)", p["problem_id"], tv.status, tv.error)
                continue
            q["target_speedup"] = float(tv.speedup) if tv.speedup is not None else None
            if tv.tier < Tier.R4:
                q["target_kind"] = "marginal"
            elif q["best_speedup"] > PARTIAL_GAP * q["target_speedup"]:
                q["target_kind"] = "partial"
            else:
                q["target_kind"] = "optimal"
        kept.append(q)
    return kept


def split_problems(
    problems: Sequence[dict],
    seed: int = 0,
    heldout_families: Iterable[str] = DEFAULT_HELDOUT_FAMILIES,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
) -> dict[str, list[dict]]:
    """Split by problem instance inside each family; held-out families go entirely to ``test_ood``.

    Args:
        problems: Problem dicts.
        seed: Seed of the per-family shuffle.
        heldout_families: Families kept out of train/validation/test.
        val_frac: Share of each (non held-out) family's problems for validation (at least one if it has 3+).
        test_frac: Same for test.
    """
    heldout = set(heldout_families)
    by_family: dict[str, list[dict]] = {}
    for p in problems:
        by_family.setdefault(p["family"], []).append(p)
    splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": [], "test_ood": []}
    for fam, items in by_family.items():
        if fam in heldout:
            splits["test_ood"].extend(items)
            continue
        items = sorted(items, key=lambda p: p["problem_id"])
        random.Random(f"perfrl-bench-split:{seed}:{fam}").shuffle(items)
        n = len(items)
        n_val = max(1, round(n * val_frac)) if n >= 3 else 0
        n_test = max(1, round(n * test_frac)) if n >= 3 else 0
        splits["test"].extend(items[:n_test])
        splits["validation"].extend(items[n_test : n_test + n_val])
        splits["train"].extend(items[n_test + n_val :])
    return splits


def to_dataset(problems: Sequence[dict], prefix: str = DEFAULT_PREFIX) -> datasets.Dataset:
    """Turn problem dicts into a ``datasets.Dataset`` with the PIE loader's columns plus benchmark metadata.

    Args:
        problems: Problem dicts.
        prefix: Instruction put before the slow code in ``prompt``.
    """
    import datasets

    schema = features(
        family="string",
        category="string",
        best_code="string",
        best_speedup="float64",
        target_speedup="float64",
        target_kind="string",
    )
    rows = {k: [] for k in schema}
    for p in problems:
        rows["prompt"].append(make_prompt(p["input_code"], prefix))
        for k in schema:
            if k != "prompt":
                rows[k].append(p[k])
    return datasets.Dataset.from_dict(rows, features=schema)


def build_benchmark(
    n_per_family: int = 20,
    seed: int = 0,
    heldout_families: Iterable[str] = DEFAULT_HELDOUT_FAMILIES,
    prefix: str = DEFAULT_PREFIX,
    validate: bool = False,
    executor: Executor | None = None,
    families: Iterable[str] | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    progress: bool = False,
) -> datasets.DatasetDict:
    """Build the bundled optimisation benchmark as a ``DatasetDict`` (train / validation / test / test_ood).

    Args:
        n_per_family: Problems generated per family (before validation drops any).
        seed: Generation and split seed; the same seed always gives the same benchmark.
        heldout_families: Families that only appear in ``test_ood`` (generalisation to unseen patterns).
        prefix: Instruction prefix of ``prompt``.
        validate: Judge every problem with the sandboxed executor (expensive: a few seconds of CPU per problem,
            so tens of minutes for the default size on 2 cores): drop problems whose best
            solution is not R4 against the slow program, measure ``best_speedup`` / ``target_speedup`` and
            re-label ``target_kind``.
        executor: Executor used when ``validate`` (default: the shared one).
        families: Restrict to these families.
        val_frac: Share of each family's problems put in ``validation``.
        test_frac: Share of each family's problems put in ``test``.
        progress: Progress bars during validation.

    Example:
        ```python
        >>> from perfrl_trl.data.benchmark import build_benchmark
        >>> ds = build_benchmark(n_per_family=5)
        >>> sorted(ds)
        ['test', 'test_ood', 'train', 'validation']
        ```
    """
    import datasets

    heldout = tuple(heldout_families)
    unknown = [f for f in heldout if f not in FAMILIES]
    if unknown:
        raise KeyError(f"unknown held-out families {unknown}")
    problems = generate_problems(n_per_family, seed, families)
    if validate:
        problems = validate_problems(problems, executor, progress=progress)
    splits = split_problems(problems, seed, heldout, val_frac, test_frac)
    return datasets.DatasetDict({k: to_dataset(v, prefix) for k, v in splits.items()})
