"""Paired evaluation: several models on the same held-out problems, with per-problem outcomes.

Table I compares models on one split. Comparing their rates alone throws away the pairing; McNemar's exact
test on per-problem outcomes keeps it. [`evaluate_models`] generates each model's beams on the same problems,
judges every program (and, optionally, the dataset's own target) in one batch on one executor, so the slow
baselines are timed once for all models, and returns per-problem outcomes in dataset order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from .generation import beam_programs, gather_in_order, process_share, torch_threads_on_cpu
from .metrics.arithmetic import aggregate, best_of_k
from .metrics.intervals import wilson_interval
from .metrics.scoring import score_programs
from .reporting import mcnemar_exact, wilcoxon_signed_rank

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .trainer.config import RRHFConfig

TARGET = "dataset target"
# The row name of the arm that continues SFT for the RL arm's wall time.
SFT_ONLY = "SFT only (same compute)"
# Target kinds of the bundled benchmark that leave room to be beaten (an "optimal" target is the best known).
_PARTLY_OPTIMISED = ("partial", "marginal")


@dataclass
class ProblemOutcome:
    """One model on one problem, after best-of-k over its returned beams.

    Args:
        problem_id: The row's ``problem_id`` (or its index as a string).
        family: The row's ``family`` when the dataset has one.
        target_kind: ``optimal``, ``partial`` or ``marginal`` for the bundled benchmark.
        compiled: Whether any returned program compiles.
        passed: Whether the chosen program passes every test.
        optimized: Passed and significantly faster than the slow input by the margin (%OPT).
        speedup: Slow runtime over the chosen program's, when it passed.
        beats_target: Passed and faster than the dataset's own target by the margin; `None` when the target
            was not judged or did not pass.
        truncated: Every returned program hit the token limit before EOS.
    """

    problem_id: str
    family: str | None
    target_kind: str | None
    compiled: bool | None
    passed: bool
    optimized: bool
    speedup: float | None
    beats_target: bool | None
    truncated: bool


@dataclass
class ModelEvaluation:
    """A model's summary (Table I's row, with intervals) and its per-problem outcomes, in dataset order."""

    name: str
    summary: dict[str, Any]
    outcomes: list[ProblemOutcome]

    @property
    def passed(self) -> list[bool]:
        return [o.passed for o in self.outcomes]

    @property
    def optimized(self) -> list[bool]:
        return [o.optimized for o in self.outcomes]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "outcomes": [asdict(o) for o in self.outcomes]}


def _load(model: str | os.PathLike | PreTrainedModel, tokenizer=None):
    if isinstance(model, (str, os.PathLike)):
        from .models import load_model_and_tokenizer

        return load_model_and_tokenizer(model)
    if tokenizer is None:
        raise ValueError("evaluate_models: a model object needs its tokenizer (pass tokenizers={name: tok})")
    return model, tokenizer


def evaluate_models(
    models: Mapping[str, str | os.PathLike | PreTrainedModel],
    dataset,
    config: RRHFConfig,
    tokenizers: Mapping[str, PreTrainedTokenizerBase] | None = None,
    compare_to_target: bool = True,
    executor=None,
    n_bootstrap: int = 1000,
) -> dict[str, ModelEvaluation]:
    """Evaluate several models on the same problems and judge all their programs together.

    Generation is split across processes when `torch.distributed` is initialised; judging runs on the main
    process, on one executor, so each slow baseline is timed once for every model. Every process returns the
    same result.

    Args:
        models: ``{name: checkpoint folder, Hub id, or model}``.
        dataset: Rows with ``prompt``, ``input_code`` and ``tests`` (and, for `compare_to_target`,
            ``target_code``); ``problem_id``, ``family`` and ``target_kind`` are carried when present.
        config: An [`RRHFConfig`]: lengths, beams, margin and execution settings.
        tokenizers: Tokenizers for the entries of `models` that are model objects.
        compare_to_target: Also judge each problem's ``target_code`` and report, per model, whether its
            program beats the dataset's own target (``beats_target``); the target itself is returned under
            the name ``"dataset target"``.
        executor: A running `perfrl_trl.execution.Executor`; defaults to the shared one for the config's
            execution settings (the one the trainer's reward uses, so baselines are reused).
        n_bootstrap: Bootstrap resamples for the SP/RTR intervals.

    Returns:
        ``{name: ModelEvaluation}`` in the order of `models` (then the target).

    Example:
        ```python
        >>> evals = evaluate_models({"sft": "outputs/sft", "rrhf": "outputs/rrhf"}, test, config)  # doctest: +SKIP
        >>> paired_tests(evals["rrhf"], evals["sft"])["pass_p"]  # doctest: +SKIP
        ```
    """
    columns = set(dataset.column_names)
    needed = {"prompt", "input_code", "tests"} | ({"target_code"} if compare_to_target else set())
    if needed - columns:
        raise ValueError(f"evaluate_models: the dataset lacks column(s) {sorted(needed - columns)}")
    if len(dataset) == 0:
        raise ValueError("evaluate_models: the dataset is empty")
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if dist else 0
    n = len(dataset)
    mine = process_share(n)
    prompts = [dataset[i]["prompt"] for i in mine]

    generated: dict[str, tuple[list[list[str]], list[list[bool]]]] = {}
    for name, model in models.items():
        m, tok = _load(model, (tokenizers or {}).get(name))
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        if device is not None:
            m = m.to(device)
        # Nothing is judged while the beams are searched: the process's whole share of the cores.
        with torch_threads_on_cpu(device or next(m.parameters()).device, sandbox_alongside=False):
            progs, trunc = beam_programs(
                m, tok, prompts, config, device=device, progress=not config.disable_tqdm
            )
        generated[name] = (gather_in_order(mine, progs, n), gather_in_order(mine, trunc, n))

    result: list[Any] = [None]
    if rank == 0:
        result[0] = _judge(generated, dataset, config, compare_to_target, executor, n_bootstrap)
    if dist:
        torch.distributed.broadcast_object_list(result, src=0)
    return result[0]


def _judge(
    generated, dataset, config, compare_to_target, executor, n_bootstrap
) -> dict[str, ModelEvaluation]:
    from .execution import ExecutionConfig, get_executor

    n = len(dataset)
    refs = list(dataset["input_code"])
    tests = list(dataset["tests"])
    names = list(generated)
    predictions: list[list[str]] = [p for name in names for p in generated[name][0]]
    if compare_to_target:
        predictions += [[t] for t in dataset["target_code"]]
    ex = executor or get_executor(ExecutionConfig(**config.execution_config_kwargs()))
    results = score_programs(
        predictions,
        refs * (len(predictions) // n),
        tests * (len(predictions) // n),
        margin=config.speedup_margin,
        executor=ex,
        progress=f"judging {len(predictions)} problem rows",
    )
    margin = config.speedup_margin
    target_best = [best_of_k(r, margin) for r in results[len(names) * n :]] if compare_to_target else None

    def column(key: str) -> list:
        return list(dataset[key]) if key in dataset.column_names else [None] * n

    ids, families, kinds = column("problem_id"), column("family"), column("target_kind")
    out: dict[str, ModelEvaluation] = {}
    for k, name in enumerate([*names, *([TARGET] if compare_to_target else [])]):
        rows = results[k * n : (k + 1) * n]
        trunc = generated[name][1] if name in generated else [[False]] * n
        outcomes = []
        for i, cands in enumerate(rows):
            best = best_of_k(cands, margin)
            beats = None
            if target_best is not None and target_best[i].passed and name != TARGET:
                t, m = target_best[i].new_time, best.new_time
                beats = bool(best.passed and t is not None and m is not None and m * margin < t)
            outcomes.append(
                ProblemOutcome(
                    problem_id=str(ids[i] if ids[i] is not None else i),
                    family=families[i],
                    target_kind=kinds[i],
                    compiled=best.compiled,
                    passed=best.passed,
                    optimized=best.is_optimized(margin),
                    speedup=best.speedup if best.passed else None,
                    beats_target=beats,
                    truncated=all(trunc[i]),
                )
            )
        summary = aggregate(rows, margin=margin, n_bootstrap=n_bootstrap)
        summary["truncation_rate"] = sum(o.truncated for o in outcomes) / n
        # Per returned program, not per problem: percent_compiled counts a problem when any beam compiles.
        programs = [c for cands in rows for c in cands]
        summary["candidate_compile_rate"] = sum(c.compiled is True for c in programs) / max(len(programs), 1)
        out[name] = ModelEvaluation(name, summary, outcomes)
    return out


def paired_tests(a: ModelEvaluation, b: ModelEvaluation) -> dict[str, Any]:
    """Exact McNemar tests of `a` against `b` on per-problem pass, "optimised" and "faster than the target".

    The target tests count only problems where both evaluations have a ``beats_target`` verdict (the dataset's
    target was judged and passed), over all of them (``beats``) and over those whose target is only partly
    optimised, ``target_kind`` ``partial`` or ``marginal`` (``beats_partial``), where beating it is possible.

    Args:
        a: One model's evaluation from [`evaluate_models`].
        b: Another's, on the same problems in the same order.

    Returns:
        ``{key}_p`` (two-sided) and the discordant counts ``{key}_only_a``, ``{key}_only_b`` for each key of
        ``pass``, ``opt``, ``beats`` and ``beats_partial``.

    Example:
        ```python
        >>> tests = paired_tests(evals["rrhf"], evals["sft"])  # doctest: +SKIP
        >>> tests["beats_partial_p"], tests["beats_partial_only_a"]  # doctest: +SKIP
        ```
    """
    if [o.problem_id for o in a.outcomes] != [o.problem_id for o in b.outcomes]:
        raise ValueError(f"paired_tests: {a.name!r} and {b.name!r} were not evaluated on the same problems")
    judged = [
        (x, y)
        for x, y in zip(a.outcomes, b.outcomes)
        if x.beats_target is not None and y.beats_target is not None
    ]
    partial = [(x, y) for x, y in judged if x.target_kind in _PARTLY_OPTIMISED]
    pairs = {
        "pass": (a.passed, b.passed),
        "opt": (a.optimized, b.optimized),
        "beats": ([x.beats_target for x, _ in judged], [y.beats_target for _, y in judged]),
        "beats_partial": ([x.beats_target for x, _ in partial], [y.beats_target for _, y in partial]),
    }
    out: dict[str, Any] = {}
    for key, (xa, xb) in pairs.items():
        out[f"{key}_p"] = mcnemar_exact(xa, xb)
        out[f"{key}_only_a"] = sum(x and not y for x, y in zip(xa, xb))
        out[f"{key}_only_b"] = sum(y and not x for x, y in zip(xa, xb))
    return out


def speedup_endpoint(a: ModelEvaluation, b: ModelEvaluation) -> dict[str, Any]:
    """Per-problem speed-up of `a` against `b`: signed-rank test on log speed-ups, geometric means.

    Every problem counts. A problem whose program failed (no passing program, so no speed-up) counts as a
    speed-up of 1.0 (log 0): the slow program stays in use. A passing program slower than the input counts
    as what it measured (below 1). Unlike %OPT, this sees by how much a model is faster, and unlike SP (a
    mean over the optimised problems only) it pairs the two models problem by problem.

    Args:
        a: One model's evaluation from [`evaluate_models`].
        b: Another's, on the same problems in the same order.

    Returns:
        ``n`` (problems); ``wilcoxon_p`` (two-sided), ``wilcoxon_statistic`` (W+, the rank sum where `a` is
        faster), ``n_differing`` (problems whose log speed-ups differ) and ``wilcoxon_method`` from
        `perfrl_trl.reporting.wilcoxon_signed_rank`; ``mean_log_speedup_a``/``_b`` (natural log),
        ``geomean_speedup_a``/``_b`` (their exponentials); ``a_faster`` and ``a_slower`` (problems where `a`'s
        speed-up is higher or lower than `b`'s).

    Example:
        ```python
        >>> end = speedup_endpoint(evals["rrhf"], evals["sft"])  # doctest: +SKIP
        >>> end["geomean_speedup_a"], end["geomean_speedup_b"], end["wilcoxon_p"]  # doctest: +SKIP
        ```
    """
    if [o.problem_id for o in a.outcomes] != [o.problem_id for o in b.outcomes]:
        raise ValueError(
            f"speedup_endpoint: {a.name!r} and {b.name!r} were not evaluated on the same problems"
        )
    if not a.outcomes:
        raise ValueError("speedup_endpoint: no problems")

    def logs(e: ModelEvaluation) -> list[float]:
        return [math.log(o.speedup) if o.passed and o.speedup else 0.0 for o in e.outcomes]

    la, lb = logs(a), logs(b)
    test = wilcoxon_signed_rank(la, lb)
    mean_a, mean_b = sum(la) / len(la), sum(lb) / len(lb)
    return {
        "n": len(la),
        "wilcoxon_p": test["p"],
        "wilcoxon_statistic": test["statistic"],
        "wilcoxon_method": test["method"],
        "n_differing": test["n_nonzero"],
        "mean_log_speedup_a": mean_a,
        "mean_log_speedup_b": mean_b,
        "geomean_speedup_a": math.exp(mean_a),
        "geomean_speedup_b": math.exp(mean_b),
        "a_faster": sum(x > y for x, y in zip(la, lb)),
        "a_slower": sum(x < y for x, y in zip(la, lb)),
    }


def beats_target_share(
    evaluation: ModelEvaluation, kinds: Sequence[str] | None = _PARTLY_OPTIMISED
) -> dict[str, Any]:
    """Share of problems with a passing dataset target where the model's program was faster than that target.

    Args:
        evaluation: A model's evaluation from [`evaluate_models`] with ``compare_to_target=True``.
        kinds: The ``target_kind`` values counted; the default, ``("partial", "marginal")``, are the targets
            that are only partly optimised. `None` counts every problem.

    Returns:
        ``{"n": problems of those kinds with a passing target, "beats": count, "share": fraction or None}``.

    Example:
        ```python
        >>> beats_target_share(evals["rrhf"], kinds=None)["share"]  # doctest: +SKIP
        ```
    """
    pool = [
        o
        for o in evaluation.outcomes
        if o.beats_target is not None and (kinds is None or o.target_kind in kinds)
    ]
    beats = sum(o.beats_target for o in pool)
    return {"n": len(pool), "beats": beats, "share": beats / len(pool) if pool else None}


def per_family(evals: Mapping[str, ModelEvaluation], names: Sequence[str]) -> list[dict[str, Any]]:
    """Per family: problem count and, per model in `names`, pass and %OPT rates (in percent)."""
    first = evals[names[0]]
    families = sorted({o.family or "-" for o in first.outcomes})
    rows = []
    for fam in families:
        row: dict[str, Any] = {"family": fam}
        for name in names:
            sel = [o for o in evals[name].outcomes if (o.family or "-") == fam]
            row["n"] = len(sel)
            row[f"{name} pass"] = 100 * sum(o.passed for o in sel) / len(sel)
            row[f"{name} %OPT"] = 100 * sum(o.optimized for o in sel) / len(sel)
        rows.append(row)
    return rows


def family_table_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of [`per_family`]'s rows."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [
            f"{r[k]:.0f}" if isinstance(r[k], float) and not math.isnan(r[k]) else str(r[k]) for k in keys
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def heldout_curve(
    checkpoints: Mapping[int, str | os.PathLike], dataset, config: RRHFConfig, executor=None
) -> dict[int, dict[str, Any]]:
    """The held-out points of an RL curve, judged after training from checkpoints saved along it.

    Judging after training keeps the points out of the RL arm's timed budget, and judging them all in one call
    times each slow baseline once. Every point is the same evaluation as the final table's (beams, best of k,
    the judge's margin), with Wilson intervals, so that a change larger than its interval is a real one.

    Args:
        checkpoints: ``{optimizer update: checkpoint folder}``; update 0 is the start model.
        dataset: The validation rows (``prompt``, ``input_code``, ``tests``, ``target_code``).
        config: An [`RRHFConfig`], as for [`evaluate_models`].
        executor: As for [`evaluate_models`].

    Returns:
        ``{update: point}`` with ``eval_pass_rate``, ``eval_opt_rate``, ``eval_compile_rate`` and
        ``eval_beats_target_rate`` (fractions; the last over problems whose target passed), a ``..._ci`` pair
        for pass and faster-than-target, and ``eval_n``, the problems judged.

    Example:
        ```python
        >>> points = heldout_curve({0: "outputs/start", 16: "outputs/rrhf/checkpoint-16"}, val, config)  # doctest: +SKIP
        >>> points[16]["eval_beats_target_rate"], points[16]["eval_beats_target_ci"]  # doctest: +SKIP
        ```
    """
    names = {f"update {step}": step for step in sorted(checkpoints)}
    evals = evaluate_models(
        {name: checkpoints[step] for name, step in names.items()}, dataset, config, executor=executor
    )
    points = {}
    for name, step in names.items():
        e = evals[name]
        n = len(e.outcomes)
        passed, compiled = sum(e.passed), sum(bool(o.compiled) for o in e.outcomes)
        beats = beats_target_share(e, kinds=None)
        points[step] = {
            "eval_n": n,
            "eval_compile_rate": compiled / n,
            "eval_pass_rate": passed / n,
            "eval_pass_ci": list(wilson_interval(passed, n)),
            "eval_opt_rate": sum(e.optimized) / n,
            "eval_beats_target_rate": beats["share"],
            "eval_beats_target_ci": list(wilson_interval(beats["beats"], beats["n"])) if beats["n"] else None,
        }
    return points
