"""Score generated programs by running them in the project's sandbox (never `exec` in this process).

`score_programs` turns (candidates, slow input program, tests) per problem into `SampleResult`s for
`perfrl_trl.metrics.arithmetic.aggregate`; the evaluate module and the trainer's evaluation both use it.
Each candidate is judged against its input program as the baseline, so the executor times both on the
same tests, on the same machine, and checks that a speed-up is beyond the noise of the trials.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .arithmetic import DEFAULT_MARGIN, SampleResult

if TYPE_CHECKING:
    from perfrl_trl.execution import ExecutionConfig, Executor

__all__ = [
    "ALLOW_EXECUTION_ENV",
    "ExecutionNotAllowedError",
    "cost_mode",
    "execution_allowed",
    "require_execution_opt_in",
    "score_programs",
]

ALLOW_EXECUTION_ENV = "PERFRL_ALLOW_CODE_EXECUTION"
# code_eval's switch: whoever set it has already agreed that evaluate metrics run untrusted code.
_HF_CODE_EVAL_ENV = "HF_ALLOW_CODE_EVAL"
_TRUE = {"1", "true", "yes", "on"}

_OPT_IN_MESSAGE = f"""
################################################################################
                                  !!!WARNING!!!
################################################################################
The perfrl/speedup metric runs model-generated programs and the slow input
programs. They run in perfrl_trl's sandbox (bubblewrap namespaces when
available, else resource limits only), but they are untrusted code: do not run
them on a machine holding secrets, and read the sandbox notes in the docs first.

Once you have read this disclaimer and taken appropriate precautions, opt in by
setting the environment variable {ALLOW_EXECUTION_ENV}="1" (or code_eval's
{_HF_CODE_EVAL_ENV}="1"):

>>> import os
>>> os.environ["{ALLOW_EXECUTION_ENV}"] = "1"

or in a shell: export {ALLOW_EXECUTION_ENV}=1

Precomputed runtimes need no opt-in: evaluate.load("perfrl/speedup", "runtimes").
################################################################################\
"""


class ExecutionNotAllowedError(ValueError):
    """Raised when programs would run without the explicit opt-in (a ValueError, like code_eval's)."""


def execution_allowed() -> bool:
    """Whether the user opted in to running untrusted programs (`PERFRL_ALLOW_CODE_EXECUTION=1`)."""
    return any(
        os.getenv(var, "").strip().lower() in _TRUE for var in (ALLOW_EXECUTION_ENV, _HF_CODE_EVAL_ENV)
    )


def require_execution_opt_in() -> None:
    """Raise `ExecutionNotAllowedError` with instructions unless the user opted in."""
    if not execution_allowed():
        raise ExecutionNotAllowedError(_OPT_IN_MESSAGE)


def _config_with_margin(
    execution_config: ExecutionConfig | Mapping[str, Any] | None, margin: float
) -> ExecutionConfig:
    from perfrl_trl.execution import ExecutionConfig

    if execution_config is None:
        return ExecutionConfig(margin=margin)
    if isinstance(execution_config, Mapping):
        return ExecutionConfig(**{**execution_config, "margin": margin})
    # The executor's significance flag is only meaningful at the margin %OPT uses.
    return dataclasses.replace(execution_config, margin=margin)


def cost_mode(
    executor: Executor | None = None,
    execution_config: ExecutionConfig | Mapping[str, Any] | None = None,
    cost: str | None = None,
) -> str:
    """What `score_programs` with these arguments measures: `"cpu_time"` or `"instructions"`.

    Example:

    ```python
    >>> cost_mode(cost="instructions"), cost_mode(execution_config={"timeout_s": 2.0})
    ('instructions', 'cpu_time')
    ```
    """
    if executor is not None:
        return str(getattr(getattr(executor, "config", None), "cost", "cpu_time"))
    if cost is not None:
        return cost
    if isinstance(execution_config, Mapping):
        return str(execution_config.get("cost", "cpu_time"))
    return str(getattr(execution_config, "cost", "cpu_time"))


def score_programs(
    predictions: Sequence[str | Sequence[str]],
    references: Sequence[str],
    tests: Sequence[Sequence[Mapping[str, str]]],
    margin: float = DEFAULT_MARGIN,
    executor: Executor | None = None,
    execution_config: ExecutionConfig | Mapping[str, Any] | None = None,
    progress: bool | str = False,
    ray_address: str | None = None,
    cost: str | None = None,
) -> list[list[SampleResult]]:
    """Judge every candidate against its problem's slow input program in the sandbox.

    Args:
        predictions (`Sequence[str | Sequence[str]]`):
            Per problem, the generated program, or a list of k candidates (best-of-k).
        references (`Sequence[str]`): per problem, the slow input program (the timing baseline).
        tests (`Sequence[Sequence[dict]]`): per problem, `[{"input": str, "output": str}, ...]`.
        margin (`float`, defaults to 1.10): the %OPT margin; the executor's significance test uses it.
        executor (`perfrl_trl.execution.Executor`, *optional*):
            A running executor to reuse (e.g. the trainer's, with its verdict cache). It should run
            with the same `margin`. By default the process-wide executor for these settings
            (`perfrl_trl.execution.get_executor`), so repeated calls time each slow program once and
            never judge an identical (program, tests, baseline) twice.
        execution_config (`ExecutionConfig` or `dict`, *optional*):
            Settings of that executor (timeouts, trials, workers...); its margin is set to `margin`.
            Ignored when `executor` is given.
        progress (`bool` or `str`, defaults to `False`): show a progress bar (a string is its title).
        ray_address (`str`, *optional*): judge on the Ray cluster at this address (`"auto"`: `$RAY_ADDRESS`,
            else the one `ray start` started here) instead of this machine's cores; sets the executor's
            `ray_address` (needs `pip install perfrl_trl[ray]`). Ignored when `executor` is given.
        cost (`str`, *optional*): what "faster" is measured in, overriding the config's: `"cpu_time"` (CPU
            seconds over repeated trials) or `"instructions"` (instructions counted once under valgrind, the
            same on every machine; docs/cost.md). Ignored when `executor` is given.

    Returns:
        `list[list[SampleResult]]`: per problem, one result per candidate, ready for `aggregate`.

    Example:

    ```python
    >>> from perfrl_trl.metrics import aggregate, score_programs
    >>> tests = [[{"input": "3\\n", "output": "6\\n"}]]
    >>> slow = "n = int(input())\\nprint(sum(i for i in range(n + 1)))"
    >>> results = score_programs(["print(sum(range(int(input()) + 1)))"], [slow], tests)
    >>> aggregate(results)["percent_passed"]
    100.0
    ```
    """
    from perfrl_trl.execution import get_executor, validate_tests

    n = len(predictions)
    for field, column in (("references", references), ("tests", tests)):
        if len(column) != n:
            raise ValueError(
                f"`predictions` has {n} entries but `{field}` has {len(column)}; they must align."
            )
    if n == 0:
        raise ValueError("score_programs() needs at least one problem; got empty `predictions`.")

    jobs: list[tuple[str, list[dict], str]] = []
    owners: list[int] = []
    for i, (cands, ref, problem_tests) in enumerate(zip(predictions, references, tests)):
        checked = validate_tests([dict(t) for t in problem_tests], where=f"tests[{i}]")
        if not isinstance(ref, str):
            raise ValueError(
                f"`references[{i}]` must be the input program as a str, got {type(ref).__name__}."
            )
        cands = [cands] if isinstance(cands, str) else list(cands)
        if not cands:
            raise ValueError(f"`predictions[{i}]` is an empty list of candidates; every problem needs >= 1.")
        for j, cand in enumerate(cands):
            if not isinstance(cand, str):
                raise ValueError(
                    f"`predictions[{i}][{j}]` must be a program as a str, got {type(cand).__name__}."
                )
            jobs.append((cand, checked, ref))
            owners.append(i)

    # A shared executor keeps its baseline timings and verdicts across calls (an evaluation every few
    # steps re-scores the same slow programs); it is closed at exit.
    if executor is None:
        config = _config_with_margin(execution_config, margin)
        if cost is not None:
            config = dataclasses.replace(config, cost=cost)
        if ray_address is not None:
            config = dataclasses.replace(config, ray_address=ray_address)
        ex = get_executor(config)
    else:
        ex = executor
    verdicts = ex.judge_many(jobs, time_it=True, progress=progress)

    exec_margin = float(getattr(getattr(ex, "config", None), "margin", margin))
    out: list[list[SampleResult]] = [[] for _ in range(n)]
    for owner, verdict in zip(owners, verdicts):
        out[owner].append(SampleResult.from_verdict(verdict, margin=exec_margin, candidate=len(out[owner])))
    return out
