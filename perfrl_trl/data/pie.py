"""Loader for PIE ("Learning Performance-Improving Code Edits", Madaan, Shypula et al.) slow/fast pairs.

PIE ships one JSON object per line (`problem_id`, `input` = slow program, `target` = faster program by the
same programmer, plus runtimes and provenance) and, per problem, CodeNet's public tests as
`<tests_dir>/<problem_id>/input.N.txt` / `output.N.txt`. [`load_pie`] turns them into a `datasets.Dataset`
with the columns the rest of `perfrl_trl` uses (`prompt`, `input_code`, `target_code`, `problem_id`, `tests`),
split by problem, and optionally keeps only the rows whose slow program runs and passes its tests within
the time limit, as PerfRL does before training.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .columns import DEFAULT_PREFIX, features, make_prompt
from .splits import problem_unit

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

_PROBLEM_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_TEST_FILE = re.compile(r"^(input|output)\.(\d+)\.txt$")
_CACHE_VERSION = "pie-executable-v1"
# PIE fields carried through when present: the paper's speed-up labels and the rows' provenance.
EXTRA_COLUMNS: dict[str, str] = {
    "runtime_lift": "float64",
    "measured_runtime_v0": "float64",
    "measured_runtime_v1": "float64",
    "cpu_time_v0": "float64",
    "cpu_time_v1": "float64",
    "submission_id_v0": "string",
    "submission_id_v1": "string",
    "user_id": "string",
}


@functools.cache
def _pie_features() -> datasets.Features:
    return features(jsonl_line="int64", **EXTRA_COLUMNS)


def __getattr__(name: str) -> Any:
    # `FEATURES` is built on first use: it imports `datasets` (seconds), which callers of `read_tests` alone,
    # such as `perfrl-trl score`, do not need.
    if name == "FEATURES":
        return _pie_features()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class DataError(ValueError):
    """PIE input that cannot be used; the message names the file and, for a row, its line number."""


@dataclass
class FilterReport:
    """What the executability filter kept: counts overall and the verdict status of every dropped row."""

    total: int
    kept: int
    dropped_by_status: dict[str, int] = field(default_factory=dict)

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.total if self.total else 0.0

    def __str__(self) -> str:
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(self.dropped_by_status.items())) or "none"
        return f"kept {self.kept}/{self.total} rows ({self.kept_fraction:.1%}); dropped: {dropped}"


def default_cache_dir() -> Path:
    """`$PERFRL_TRL_CACHE`, else `$XDG_CACHE_HOME/perfrl_trl`, else `~/.cache/perfrl_trl`."""
    if os.environ.get("PERFRL_TRL_CACHE"):
        return Path(os.environ["PERFRL_TRL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "perfrl_trl"


def read_pairs(
    pairs_jsonl: str | os.PathLike, input_field: str = "input", target_field: str = "target"
) -> list[tuple[int, dict]]:
    """Parse and check a PIE jsonl file; returns `(line_number, row)` pairs (blank lines are skipped)."""
    path = Path(pairs_jsonl)
    if not path.is_file():
        raise DataError(f"{path}: PIE pairs file not found")
    required = ("problem_id", input_field, target_field)
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            missing = [c for c in required if c not in row]
            if missing:
                raise DataError(f"{where}: missing column(s) {missing}; a PIE row needs {list(required)}")
            for col in required:
                if not isinstance(row[col], str) or not row[col]:
                    raise DataError(
                        f"{where}: column {col!r} must be a non-empty string, got {row[col]!r:.60}"
                    )
            # The id becomes a path under tests_dir: refuse anything that could leave it.
            if not _PROBLEM_ID.match(row["problem_id"]) or row["problem_id"] in (".", ".."):
                raise DataError(f"{where}: problem_id {row['problem_id']!r} is not a plain folder name")
            rows.append((lineno, row))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def read_tests(tests_dir: str | os.PathLike, problem_id: str) -> list[dict[str, str]]:
    """Read `<tests_dir>/<problem_id>/input.N.txt` / `output.N.txt` pairs, ordered by N, bytes preserved."""
    folder = Path(tests_dir) / problem_id
    if not folder.is_dir():
        raise DataError(f"{folder}: missing test folder for problem {problem_id!r}")
    found: dict[str, dict[int, Path]] = {"input": {}, "output": {}}
    for child in folder.iterdir():
        match = _TEST_FILE.match(child.name)
        if match and child.is_file():
            found[match.group(1)][int(match.group(2))] = child
    for kind, other in (("input", "output"), ("output", "input")):
        unmatched = sorted(found[kind].keys() - found[other].keys())
        if unmatched:
            n = unmatched[0]
            raise DataError(f"{found[kind][n]}: no matching {other}.{n}.txt in {folder}")
    if not found["input"]:
        raise DataError(f"{folder}: empty test list (no input.N.txt / output.N.txt pairs)")
    tests = []
    for n in sorted(found["input"]):
        test = {}
        for kind in ("input", "output"):
            try:
                # newline="" keeps "\r\n" as is: the program must see exactly the judge's stdin.
                with found[kind][n].open(encoding="utf-8", newline="") as fh:
                    test[kind] = fh.read()
            except UnicodeDecodeError as exc:
                raise DataError(f"{found[kind][n]}: not UTF-8 ({exc.reason})") from None
        tests.append(test)
    return tests


# The salt of the fixed adaptation/evaluation split: changing it would move problems between the halves, and
# the evaluation half must never have been trained on.
ADAPT_EVAL_SALT = "pie-adapt-eval-v1"
HALVES = ("adapt", "eval")


def split_of(problem_id: str) -> str:
    """The fixed half of PIE a problem belongs to: ``"adapt"`` or ``"eval"``.

    Everything after the bundled checkpoint uses this split. The evaluation half is never trained on; the
    adaptation half may be, from its tests only (its targets are never read for training). The half depends only
    on the problem id (SHA-256, see `perfrl_trl.data.splits.problem_unit`), so it is the same on every
    machine, whatever rows or other problems a copy of PIE holds, and every pair of a problem is on one side.

    Args:
        problem_id (`str`): A PIE/CodeNet problem id, e.g. ``"p03371"``.

    Example:
        ```python
        >>> split_of("p03371") in ("adapt", "eval")
        True
        ```
    """
    if not isinstance(problem_id, str) or not _PROBLEM_ID.match(problem_id):
        raise ValueError(f"split_of: not a problem id: {problem_id!r}")
    return "adapt" if problem_unit(problem_id, salt=ADAPT_EVAL_SALT) < 0.5 else "eval"


def split_by_problem(problem_ids: list[str], splits: dict[str, float], seed: int = 0) -> dict[str, str]:
    """Assign each distinct problem to a split: shuffled with `seed`, sized by largest remainder.

    Args:
        problem_ids: ids (repeats allowed); only the distinct values matter.
        splits: split name -> fraction of the problems; fractions are positive and sum to 1.
        seed: the same ids, fractions and seed always give the same assignment.

    Returns:
        `dict[str, str]`: problem id -> split name.
    """
    if not splits or any(not isinstance(f, (int, float)) or f <= 0 for f in splits.values()):
        raise ValueError(f"splits must map names to positive fractions, got {splits!r}")
    if not math.isclose(sum(splits.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must sum to 1, got {sum(splits.values())} from {splits!r}")
    problems = sorted(set(problem_ids))
    random.Random(seed).shuffle(problems)
    exact = {name: frac * len(problems) for name, frac in splits.items()}
    counts = {name: math.floor(x) for name, x in exact.items()}
    by_remainder = sorted(splits, key=lambda name: exact[name] - counts[name], reverse=True)
    for name in by_remainder[: len(problems) - sum(counts.values())]:
        counts[name] += 1
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise ValueError(
            f"split(s) {empty} get no problem: {len(problems)} problems are too few for {splits}"
        )
    assignment, start = {}, 0
    for name, n in counts.items():
        assignment.update(dict.fromkeys(problems[start : start + n], name))
        start += n
    return assignment


def _cache_key(code: str, tests: list[dict], config_key: Any) -> str:
    payload = json.dumps([_CACHE_VERSION, code, tests, repr(config_key)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _load_cache(path: Path) -> dict[str, dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:  # a corrupt cache only costs a re-run
        logger.warning("ignoring unreadable filter cache %s: %s", path, exc)
        return {}


def _save_cache(path: Path, new: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**_load_cache(path), **new}  # re-read: another process may have added entries meanwhile
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)  # atomic: readers never see half a file


def filter_executable(
    dataset: datasets.Dataset,
    executor: Any = None,
    timeout_s: float = 5.0,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    progress: bool = True,
) -> tuple[datasets.Dataset, FilterReport]:
    """Keep the rows whose slow program (`input_code`) passes all its `tests` in the sandbox.

    PerfRL drops training inputs that do not run within 5 s on their tests; this reproduces that with the
    project's sandboxed executor (correctness run only, no timing). Verdicts are cached on disk, keyed by a
    hash of code, tests and executor settings, so a second call only reads a JSON file; sandbox errors are
    not cached (they say nothing about the program).

    Args:
        dataset (`datasets.Dataset`): with `input_code` and `tests` columns (as made by [`load_pie`]).
        executor (`perfrl_trl.execution.Executor`, *optional*): used as is (its own timeout applies); by
            default a private one with `timeout_s` per test and `num_proc` workers, closed afterwards.
        timeout_s (`float`, defaults to 5.0): wall-clock limit per test run of the default executor.
        cache_dir (`str` or `os.PathLike`, *optional*): folder of `pie_executable.json`; defaults to
            [`default_cache_dir`].
        num_proc (`int`, *optional*): parallel sandbox workers of the default executor (default: all cores).
        progress (`bool`, defaults to `True`): show a tqdm bar while judging.

    Returns:
        `tuple[datasets.Dataset, FilterReport]`: the kept rows (order preserved) and the counts.

    Example:
        ```python
        >>> ds = load_pie("../shared/pie/py_test_pairs.jsonl", "../shared/pie/public_test_cases")
        >>> kept, report = filter_executable(ds.select(range(40)))
        >>> print(report)  # doctest: +SKIP
        kept 31/40 rows (77.5%); dropped: timeout=6, wrong_answer=3
        ```
    """
    codes, tests = dataset["input_code"], dataset["tests"]
    own = executor is None
    if own:
        from perfrl_trl.execution import ExecutionConfig, Executor

        executor = Executor(ExecutionConfig(timeout_s=timeout_s, workers=num_proc))
    try:
        config = getattr(executor, "config", None)
        config_key = config.key() if hasattr(config, "key") else timeout_s
        keys = [_cache_key(c, t, config_key) for c, t in zip(codes, tests)]
        cache_path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "pie_executable.json"
        cache = _load_cache(cache_path)
        todo = {k: (c, t, None) for k, c, t in zip(keys, codes, tests) if k not in cache}  # dedupes
        if todo:
            kwargs: dict[str, Any] = {"progress": "PIE executability filter" if progress else False}
            if "time_it" in inspect.signature(executor.judge_many).parameters:
                kwargs["time_it"] = False  # only correctness matters here; timing would cost 5x more runs
            verdicts = executor.judge_many(list(todo.values()), **kwargs)
            fresh = {k: {"passed": bool(v.passed), "status": v.status} for k, v in zip(todo, verdicts)}
            cache.update(fresh)
            _save_cache(cache_path, {k: v for k, v in fresh.items() if v["status"] != "sandbox_error"})
    finally:
        if own:
            executor.close()
    keep = [i for i, k in enumerate(keys) if cache[k]["passed"]]
    dropped = Counter(cache[k]["status"] for k in keys if not cache[k]["passed"])
    report = FilterReport(total=len(keys), kept=len(keep), dropped_by_status=dict(dropped))
    logger.info(
        "PIE executability filter (%d judged, %d cached): %s", len(todo), len(keys) - len(todo), report
    )
    return dataset.select(keep), report


def load_pie(
    pairs_jsonl: str | os.PathLike,
    tests_dir: str | os.PathLike,
    prefix: str = DEFAULT_PREFIX,
    splits: dict[str, float] | None = None,
    seed: int = 0,
    filter_executable: bool = False,
    executor: Any = None,
    filter_timeout_s: float = 5.0,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    progress: bool = True,
    input_field: str = "input",
    target_field: str = "target",
    return_report: bool = False,
    half: str | None = None,
) -> datasets.Dataset | datasets.DatasetDict | tuple[Any, FilterReport | None]:
    """Load PIE slow/fast pairs with their public tests as a `datasets.Dataset` or `DatasetDict`.

    Columns: `prompt` (`prefix` + slow code), `input_code`, `target_code`, `problem_id`, `tests`
    (`[{"input", "output"}, ...]`, every `input.N.txt` of the problem, in order of N, duplicates kept as PIE
    runs them), `jsonl_line` (1-based line in `pairs_jsonl`) and, when the file has them, `runtime_lift`,
    `measured_runtime_v0/v1`, `cpu_time_v0/v1`, `submission_id_v0/v1`, `user_id` (else `None`).

    Args:
        pairs_jsonl (`str` or `os.PathLike`): PIE's jsonl file (e.g. `py_test_pairs.jsonl`).
        tests_dir (`str` or `os.PathLike`): folder holding one sub-folder of tests per `problem_id`.
        prefix (`str`, defaults to `"Write faster version:\\n"`): instruction put before the slow code.
        splits (`dict[str, float]`, *optional*): e.g. `{"train": 0.8, "validation": 0.1, "test": 0.1}`:
            fractions of the *problems* (never rows), so no problem is in two splits; assignment depends only
            on the problem ids, the fractions and `seed`, not on the filter. `None` returns one `Dataset`.
        seed (`int`, defaults to 0): seed of the split.
        filter_executable (`bool`, defaults to `False`): drop rows whose slow program does not pass its tests
            (see [`filter_executable`]); the count kept is logged at INFO level.
        executor, filter_timeout_s, cache_dir, num_proc, progress: passed to [`filter_executable`]
            (`filter_timeout_s` is its `timeout_s`).
        input_field, target_field (`str`): PIE fields holding the programs; `"code_v0_no_empty_lines"` and
            `"code_v1_no_empty_lines"` give PIE's copies without blank lines.
        return_report (`bool`, defaults to `False`): also return the [`FilterReport`] (`None` when not
            filtering).
        half (`str`, *optional*): `"adapt"` or `"eval"`: keep only the problems of that half of the fixed split
            ([`split_of`]), before filtering (so only that half's slow programs are run) and before `splits`.

    Returns:
        `datasets.Dataset` or `datasets.DatasetDict` (with the split names in the order given), or a tuple of
        it and the report when `return_report=True`.

    Raises:
        `DataError`: naming the file and line for a malformed row, a missing column, a missing or empty test
        folder, or an `input.N.txt` without its `output.N.txt` (and vice versa).

    Example:
        ```python
        >>> from perfrl_trl.data import load_pie
        >>> ds = load_pie("../shared/pie/py_test_pairs.jsonl", "../shared/pie/public_test_cases",
        ...               splits={"train": 0.8, "test": 0.2})
        >>> ds["train"][0]["prompt"].startswith("Write faster version:\\n")
        True
        ```
    """
    if half is not None and half not in HALVES:
        raise ValueError(f"load_pie: half must be one of {HALVES} or None, got {half!r}")
    pairs = read_pairs(pairs_jsonl, input_field, target_field)
    if half is not None:
        pairs = [(lineno, row) for lineno, row in pairs if split_of(row["problem_id"]) == half]
        if not pairs:
            raise DataError(f"{pairs_jsonl}: no pair of a problem of the {half!r} half")
    tests_root = Path(tests_dir)
    if not tests_root.is_dir():
        raise DataError(f"{tests_root}: tests folder not found")
    tests_of: dict[str, list[dict]] = {}
    import datasets

    pie_features = _pie_features()
    columns: dict[str, list] = {name: [] for name in pie_features}
    for lineno, row in pairs:
        pid = row["problem_id"]
        if pid not in tests_of:
            try:
                tests_of[pid] = read_tests(tests_root, pid)
            except DataError as exc:
                raise DataError(f"{exc} (needed by {pairs_jsonl}:{lineno})") from None
        columns["prompt"].append(make_prompt(row[input_field], prefix))
        columns["input_code"].append(row[input_field])
        columns["target_code"].append(row[target_field])
        columns["problem_id"].append(pid)
        columns["tests"].append(tests_of[pid])
        columns["jsonl_line"].append(lineno)
        for name, dtype in EXTRA_COLUMNS.items():
            value = row.get(name)
            try:
                columns[name].append(
                    None if value is None else float(value) if dtype == "float64" else str(value)
                )
            except (TypeError, ValueError):
                raise DataError(
                    f"{pairs_jsonl}:{lineno}: column {name!r} is not a number: {value!r:.40}"
                ) from None
    dataset = datasets.Dataset.from_dict(columns, features=pie_features)
    logger.info("loaded %d PIE rows over %d problems from %s", len(dataset), len(tests_of), pairs_jsonl)

    report = None
    if filter_executable:
        dataset, report = _filter(dataset, executor, filter_timeout_s, cache_dir, num_proc, progress)
    result: datasets.Dataset | datasets.DatasetDict = dataset
    if splits is not None:
        assignment = split_by_problem([row["problem_id"] for _, row in pairs], splits, seed)
        names = [assignment[pid] for pid in dataset["problem_id"]]
        result = datasets.DatasetDict(
            {split: dataset.select([i for i, n in enumerate(names) if n == split]) for split in splits}
        )
    return (result, report) if return_report else result


_filter = filter_executable  # `load_pie`'s boolean argument shadows the function's name inside it


def load_pie_programs(
    pie_dir: str | os.PathLike,
    half: str,
    executor: Any = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """One row per distinct slow program of one half of PIE that passes its own public tests.

    PIE pairs one slow program with several targets at times; a program is judged (and, for training, prompted)
    once, with the first pair's target. Programs that fail their own tests (Python 2 `input()`,
    `fractions.gcd`, scipy, ...) can be neither judged nor rewarded: they are left out and counted.

    Args:
        pie_dir (`str` or `os.PathLike`): PIE's folder (`py_test_pairs.jsonl`, `public_test_cases/`).
        half (`str`): `"adapt"` or `"eval"` (see [`split_of`]).
        executor, progress, cache_dir: As in [`filter_executable`].

    Returns:
        `(dataset, counts)`: [`load_pie`]'s columns; `counts` has `pairs` and `problems` of the half, its distinct
        `programs`, those `passing_own_tests`, and `left_out` (the dropped programs per verdict status).

    Example:
        ```python
        >>> programs, counts = load_pie_programs("../shared/pie", "eval")  # doctest: +SKIP
        >>> counts["passing_own_tests"] == len(programs)  # doctest: +SKIP
        True
        ```
    """
    root = Path(pie_dir)
    rows = load_pie(root / "py_test_pairs.jsonl", root / "public_test_cases", half=half, progress=progress)
    first: dict[str, int] = {}
    for i, code in enumerate(rows["input_code"]):
        first.setdefault(code, i)
    distinct = rows.select(sorted(first.values()))
    kept, report = filter_executable(distinct, executor=executor, cache_dir=cache_dir, progress=progress)
    counts = {
        "pairs": len(rows),
        "problems": len(set(rows["problem_id"])),
        "programs": len(distinct),
        "passing_own_tests": report.kept,
        "left_out": report.dropped_by_status,
    }
    return kept, counts
