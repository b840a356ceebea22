# Copyright 2025 The perfrl_trl authors. Licensed under the Apache License, Version 2.0.
"""perfrl/speedup: %OPT, speedup (SP), runtime reduction (RTR), compile and pass rates of optimised code.

This script runs from evaluate's module cache, so it holds no logic of its own: the arithmetic comes from
`perfrl_trl.metrics.arithmetic` and the sandboxed execution from `perfrl_trl.metrics.scoring`, both
imported from the installed `perfrl_trl` package (`pip install perfrl_trl`).
"""

import datasets
import evaluate

from perfrl_trl import citations
from perfrl_trl.metrics.arithmetic import DEFAULT_MARGIN, aggregate, results_from_runtimes
from perfrl_trl.metrics.scoring import cost_mode, require_execution_opt_in, score_programs

_CITATION = citations.PIE + citations.PERFRL

_DESCRIPTION = """\
Measures how much faster generated programs are than the slow programs they rewrite, as in PIE
(Shypula et al., ICLR 2024) and PerfRL (Duan et al., 2023). Per problem, o is the runtime of the slow
input program and n the runtime of the best correct candidate (best-of-k when several are given).

- percent_optimized (%OPT): share of problems whose best correct candidate has o / n >= margin
  (default 1.10, i.e. at least 10% faster; a tie at the margin counts).
- speedup (SP, PIE convention): mean over all problems of max(o / n, 1), with 1.0 for a problem
  without a correct candidate.
- speedup_optimized_only (SP, PerfRL convention): mean of o / n over the optimised problems only.
- runtime_reduction_optimized_only (RTR, PerfRL): mean of (o - n) / o * 100 over optimised problems;
  runtime_reduction is the same over all problems from the clipped speedup (0 if failed or slower).
- percent_compiled / percent_passed: share of problems with a candidate that compiles / passes all tests.
Each rate comes with a Wilson interval and each mean with a bootstrap interval, plus n_samples.

Two configurations: "default" runs the programs in perfrl_trl's sandbox (opt-in required:
PERFRL_ALLOW_CODE_EXECUTION=1); "runtimes" takes runtimes measured by your own harness and runs nothing.
"""

_KWARGS_DESCRIPTION = """
Args (configuration "default", programs are executed):
    predictions (`list[str]` or `list[list[str]]`): per problem, the generated program or k candidates.
    references (`list[str]`): per problem, the slow input program (also the timing baseline).
    tests (`list[list[dict]]`): per problem, the unit tests `[{"input": str, "output": str}, ...]`,
        the same form as the dataset's `tests` column.
    execution_config (`perfrl_trl.execution.ExecutionConfig` or `dict`, *optional*): sandbox settings
        (timeout_s, n_trials, memory_mb, workers...). Its margin is always set to `margin`.
    executor (`perfrl_trl.execution.Executor`, *optional*): a running executor to reuse.
    progress (`bool`, *optional*): show a progress bar while judging.
    ray_address (`str`, *optional*): judge on the Ray cluster at this address ("auto": $RAY_ADDRESS, else
        the one `ray start` started here) instead of this machine's cores (`pip install perfrl_trl[ray]`).
    cost (`str`, *optional*): what "faster" is measured in: "cpu_time" (default, CPU seconds over repeated
        trials) or "instructions" (instructions counted once per test under valgrind, start-up left out,
        the same on every machine; needs valgrind). Ignored when `executor` is given.
Args (configuration "runtimes", nothing is executed):
    predictions (`list[float | None]` or `list[list[float | None]]`): per problem, the seconds taken
        by the candidate (or each of k candidates) on the tests; `None` (or NaN) for a failed one.
    references (`list[float]`): per problem, the seconds taken by the slow input program.
    compiled (`list[bool]` or `list[list[bool]]`, *optional*): whether each candidate compiled;
        without it percent_compiled is `None`.
Args (both):
    margin (`float`, defaults to 1.10): minimum speedup o / n for %OPT.
    confidence (`float`, defaults to 0.95): level of the confidence intervals.
    n_bootstrap (`int`, defaults to 1000): bootstrap resamples for the intervals of the means.
    return_details (`bool`, defaults to `False`): also return one dict per problem under `details`.
Returns:
    `dict` with percent_optimized, speedup, speedup_optimized_only, runtime_reduction,
    runtime_reduction_optimized_only, percent_compiled, percent_passed, their `*_ci` intervals,
    n_samples, n_candidates, n_optimized, n_passed, n_compiled, n_baseline_missing, margin, confidence,
    cost (what the programs were measured in: "cpu_time" or "instructions"; None for given runtimes)
    (and details). Rates and RTR are percentages.
Examples:
    >>> import evaluate
    >>> speedup = evaluate.load("perfrl/speedup", "runtimes")
    >>> out = speedup.compute(predictions=[0.5, [None, 0.95], None], references=[1.0, 1.0, 1.0])
    >>> out["percent_optimized"], out["speedup"], out["speedup_optimized_only"]
    (33.333333333333336, 1.3508771929824561, 2.0)

    >>> import os
    >>> os.environ["PERFRL_ALLOW_CODE_EXECUTION"] = "1"
    >>> speedup = evaluate.load("perfrl/speedup")
    >>> slow = "n = int(input())\\ns = 0\\nfor i in range(n + 1):\\n    s += i\\nprint(s)"
    >>> fast = "n = int(input())\\nprint(n * (n + 1) // 2)"
    >>> tests = [[{"input": "3000000\\n", "output": "4500001500000\\n"}]]
    >>> speedup.compute(predictions=[fast], references=[slow], tests=tests)["percent_optimized"]
    100.0
"""

_STRING = datasets.Value("string")
_SECONDS = datasets.Value("float64")
_TESTS = [{"input": _STRING, "output": _STRING}]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Speedup(evaluate.Metric):
    """%OPT, SP, RTR, compile and pass rates of code rewritten to run faster (PIE / PerfRL)."""

    def _info(self):
        if self.config_name == "runtimes":
            features = [
                datasets.Features({"predictions": _SECONDS, "references": _SECONDS}),
                datasets.Features({"predictions": datasets.Sequence(_SECONDS), "references": _SECONDS}),
            ]
        elif self.config_name == "default":
            features = [
                datasets.Features({"predictions": _STRING, "references": _STRING, "tests": _TESTS}),
                datasets.Features(
                    {"predictions": datasets.Sequence(_STRING), "references": _STRING, "tests": _TESTS}
                ),
            ]
        else:
            raise KeyError(
                f"Unknown configuration {self.config_name!r} for perfrl/speedup: use 'default' (run the "
                "programs in the sandbox) or 'runtimes' (precomputed runtimes)."
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=features,
            homepage="https://arxiv.org/abs/2312.05657",
            codebase_urls=["https://github.com/madaan/pie-perf", "https://github.com/lostkingdom4/Perf_LLM"],
            reference_urls=["https://arxiv.org/abs/2302.07867", "https://arxiv.org/abs/2312.05657"],
            license="apache-2.0",
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of problems; see `compute` for the inputs."""
        # evaluate indexes the first example to pick a feature set and fails with an IndexError on [].
        for name, column in (("predictions", predictions), ("references", references), *kwargs.items()):
            if column is not None and len(column) == 0:
                raise ValueError(f"perfrl/speedup got an empty `{name}` list: pass at least one problem.")
        if predictions is not None:
            predictions = self._align_candidates(list(predictions))
        return evaluate.Metric.add_batch(self, predictions=predictions, references=references, **kwargs)

    def _align_candidates(self, predictions):
        # evaluate picks one feature set from the first problem, so a batch mixing single candidates
        # with best-of-k lists would be rejected: a single candidate becomes a list of one.
        fmt = self.selected_feature_format
        listed = fmt is not None and isinstance(fmt["predictions"], datasets.Sequence)
        if listed or any(isinstance(p, (list, tuple)) for p in predictions):
            return [list(p) if isinstance(p, (list, tuple)) else [p] for p in predictions]
        return predictions

    def _compute(
        self,
        predictions,
        references,
        tests=None,
        compiled=None,
        margin=DEFAULT_MARGIN,
        confidence=0.95,
        n_bootstrap=1000,
        return_details=False,
        execution_config=None,
        executor=None,
        progress=False,
        ray_address=None,
        cost=None,
    ):
        if self.config_name == "runtimes":
            if tests is not None:
                raise ValueError("`tests` is only for the 'default' configuration, which runs the programs.")
            results = results_from_runtimes(new_times=predictions, old_times=references, compiled=compiled)
            measured_in = None
        else:
            if compiled is not None:
                raise ValueError(
                    "`compiled` is only for the 'runtimes' configuration; programs are compiled here."
                )
            require_execution_opt_in()
            results = score_programs(
                predictions,
                references,
                tests,
                margin=margin,
                executor=executor,
                execution_config=execution_config,
                progress=progress,
                ray_address=ray_address,
                cost=cost,
            )
            measured_in = cost_mode(executor, execution_config, cost)
        out = aggregate(
            results,
            margin=margin,
            confidence=confidence,
            n_bootstrap=n_bootstrap,
            return_details=return_details,
        )
        out["cost"] = measured_in
        return out
