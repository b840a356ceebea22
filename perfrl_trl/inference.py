"""Optimise one program with a trained model: sample candidates, verify them in the sandbox, keep the best.

This is the inference loop of the PerfRL paper (Fig. 1c): the model proposes N rewrites of a slow program, every
rewrite is run against the unit tests and timed against the original, and only a rewrite that passes every
test *and* is faster by the margin (tier R4) is ever returned. The library's generic rewrites of the program
(`perfrl_trl.data.rewrite_pairs.candidate_rewrites`) join the model's candidates by default and are verified
the same way; the result says where the verified program came from.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from .data.columns import DEFAULT_PREFIX, make_prompt
from .data.rewrite_pairs import candidate_rewrites
from .execution import DEFAULT_MARGIN, ExecutionConfig, Executor, Tier, validate_tests
from .generation import generate_completions, sampling_config, tokenize_prompts, torch_threads_on_cpu
from .rewards import RewardDetails, UnitTestRewardFunction, completion_to_code

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One distinct generated program and its sandbox verdict.

    ``source`` is where it first came from: the model (``"beam"`` or ``"sample"``) or a generic rewrite
    (``"rewrite:<label>"``, e.g. ``"rewrite:fast_input+into_function"``); ``count`` how many of the model's
    generations gave the same program (0 for a rewrite the model never wrote), ``truncated`` whether it hit
    ``max_new_tokens``.
    """

    code: str
    details: RewardDetails
    source: str
    count: int = 1
    truncated: bool = False

    @property
    def tier(self) -> Tier:
        return Tier.from_name(str(self.details.tier))

    @property
    def from_model(self) -> bool:
        return not self.source.startswith("rewrite:")

    def summary(self) -> dict:
        """The verdict without the code (safe to show for a program that is not verified)."""
        d = self.details
        return {
            "tier": d.tier,
            "status": d.status,
            "speedup": d.speedup,
            "source": self.source,
            "count": self.count,
        }


@dataclass
class OptimizationResult:
    """What :func:`optimize_program` found.

    Args:
        found: Whether some candidate passed every test and was faster by ``margin`` (tier R4).
        best: That candidate's code (the largest verified speed-up), else ``None``; never an unverified program.
        speedup: Its measured speed-up (baseline CPU time / its CPU time, summed over tests).
        runtime: Its CPU seconds (median of the timing trials, summed over tests).
        baseline_runtime: The input program's CPU seconds, when any candidate got far enough to be compared.
        margin: The speed-up a candidate needed.
        candidates: Every distinct candidate with its verdict: the model's in generation order, then the
            rewrites the model did not also write.
        n_generated: Candidates the model generated, before de-duplication.
        n_unchanged: Generations that reproduced the input program (not scored: they cannot be faster).
        message: One human-readable line.
        source: Where ``best`` came from (its candidate's ``source``), else ``None``.
    """

    found: bool
    best: str | None
    speedup: float | None
    runtime: float | None
    baseline_runtime: float | None
    margin: float
    candidates: list[Candidate] = field(default_factory=list)
    n_generated: int = 0
    n_unchanged: int = 0
    message: str = ""
    source: str | None = None

    @property
    def tier_counts(self) -> dict[str, int]:
        counts = Counter(c.tier for c in self.candidates)
        return {str(t): counts[t] for t in Tier}

    def diff(self, program: str, name: str = "program.py") -> str:
        """Unified diff from ``program`` to the best candidate (empty when nothing was found)."""
        if self.best is None:
            return ""
        lines = [(line if line.endswith("\n") else line + "\n") for line in program.splitlines(True)]
        new = [(line if line.endswith("\n") else line + "\n") for line in self.best.splitlines(True)]
        return "".join(difflib.unified_diff(lines, new, fromfile=name, tofile=f"{name} (optimized)"))


def _load(model, tokenizer, device) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from .models import load_model_and_tokenizer, load_tokenizer, prepare_tokenizer

    if isinstance(model, (str, os.PathLike)):
        tok_source = tokenizer if isinstance(tokenizer, (str, os.PathLike)) else None
        try:
            loaded, tok = load_model_and_tokenizer(model, tok_source)
        except OSError as exc:  # a missing folder, or a Hub id with no network or cache
            raise ValueError(f"cannot load model {str(model)!r}: {exc}") from exc
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        loaded.to(device)
        return loaded, tokenizer if isinstance(tokenizer, PreTrainedTokenizerBase) else tok
    if device is not None:
        model.to(device)
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        source = tokenizer or getattr(model, "name_or_path", "")
        if not source:
            raise ValueError("pass `tokenizer`: the model object does not say where it was loaded from")
        tokenizer = prepare_tokenizer(load_tokenizer(source), model.config.is_encoder_decoder)
    return model, tokenizer


def _generate(model, tok, prompt: str, n: int, num_beams: int, batch_size: int, max_prompt_length, sampling):
    """``(text, truncated, source)`` for ``num_beams`` beam-search results and ``n`` samples."""
    device = next(model.parameters()).device
    inputs = tokenize_prompts(tok, [prompt], max_prompt_length, device)
    if max_prompt_length is not None and len(tok(prompt).input_ids) > max_prompt_length:
        logger.warning("the prompt is longer than max_prompt_length=%d and was truncated", max_prompt_length)
    base = GenerationConfig(
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
    )
    out = []
    if num_beams > 0:
        # num_beams=1 is greedy decoding; more beams also return the runners-up.
        beam = sampling_config(
            base, do_sample=False, num_beams=num_beams, max_new_tokens=sampling["max_new_tokens"]
        )
        out += [
            (c.text, c.truncated, "beam")
            for c in generate_completions(model, tok, inputs, beam, num_beams)[0]
        ]
    sample = sampling_config(base, do_sample=True, **sampling)
    for start in range(0, n, batch_size):
        group = generate_completions(model, tok, inputs, sample, min(batch_size, n - start))[0]
        out += [(c.text, c.truncated, "sample") for c in group]
    return out


def optimize_program(
    program: str,
    tests: Sequence[dict],
    model: PreTrainedModel | str | os.PathLike | None,
    tokenizer: PreTrainedTokenizerBase | str | None = None,
    n: int = 8,
    prefix: str = DEFAULT_PREFIX,
    include_beam: bool = True,
    num_beams: int = 1,
    max_new_tokens: int = 512,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 1.0,
    margin: float = DEFAULT_MARGIN,
    execution_config: ExecutionConfig | None = None,
    executor: Executor | None = None,
    seed: int | None = None,
    max_prompt_length: int | None = None,
    batch_size: int = 8,
    cpu_threads: int | None = None,
    device: str | torch.device | None = None,
    rewrites: bool = True,
) -> OptimizationResult:
    """Ask a model for faster versions of ``program`` and return the fastest one verified in the sandbox.

    The input program is first run on ``tests`` (it must pass them: it is the reference and the timing
    baseline). The model then generates ``n`` samples (plus ``num_beams`` beam-search results when
    ``include_beam``), and with ``rewrites`` the library's generic rewrites of the program join them;
    duplicates and copies of the input are dropped, and every remaining candidate is scored by
    :class:`~perfrl_trl.rewards.UnitTestRewardFunction` against the input (timed once and cached). Only tier
    R4 survives: every test passed and faster by ``margin``, significantly over the timing trials.

    Args:
        program: The slow Python program (reads stdin, writes stdout).
        tests: ``[{"input": str, "output": str}, ...]`` the program and its rewrites must pass.
        model: A seq2seq or causal LM, or a folder / Hub id for
            :func:`~perfrl_trl.models.load_model_and_tokenizer`; ``None`` judges the rewrites alone.
        tokenizer: Its tokenizer (or where to load it); defaults to the model's own.
        n: Random samples to draw.
        prefix: Instruction put before the program in the prompt (the one the model was trained with).
        include_beam: Also decode deterministically (greedy for ``num_beams=1``, else beam search).
        num_beams: Beams, and beam results kept, when ``include_beam``.
        max_new_tokens: Length limit of a candidate, in tokens.
        temperature, top_k, top_p: Sampling settings.
        margin: Speed-up a candidate needs (PIE's 1.10 by default).
        execution_config: Sandbox limits and timing trials; its ``margin`` is replaced by ``margin``.
        executor: An executor to share (its own config decides R4; ``margin`` is then also enforced here).
        seed: Makes the sampling reproducible (the global RNG state is left untouched).
        max_prompt_length: Truncate longer prompts (``None``: never).
        batch_size: Samples generated per ``generate`` call.
        cpu_threads: Torch threads on CPU during generation; defaults to half the process's share of the usable
            cores (see `perfrl_trl.execution.cores`).
        device: Where to run the model; a model loaded from a path defaults to CUDA if available, else CPU.
        rewrites: Also judge the generic rewrites of ``program`` (each of
            `perfrl_trl.data.rewrites.REWRITES` that applies, and their composition; see
            :func:`~perfrl_trl.data.rewrite_pairs.candidate_rewrites`). A program that both the model and a
            rewrite produce counts as the model's.

    Returns:
        An :class:`OptimizationResult`; ``best`` is ``None`` unless ``found``.

    Raises:
        ValueError: Bad arguments, a model that cannot be loaded, or an input program that fails its own tests
            (checked before the model is loaded).

    Example:
        ```python
        >>> from perfrl_trl.inference import optimize_program
        >>> slow = "n = int(input())\\nprint(sum(i for i in range(n + 1)))\\n"
        >>> result = optimize_program(slow, [{"input": "3000000\\n", "output": "4500001500000\\n"}], "path/to/model")
        >>> if result.found:
        ...     print(f"{result.speedup:.1f}x faster\\n{result.diff(slow)}")
        ```
    """
    if model is None and not rewrites:
        raise ValueError("nothing to try: pass a model, or rewrites=True to judge the generic rewrites alone")
    if model is not None and (n < 0 or (include_beam and num_beams < 1) or (n == 0 and not include_beam)):
        raise ValueError(
            f"need n >= 0, num_beams >= 1 and at least one candidate; got n={n}, num_beams={num_beams}"
        )
    tests = validate_tests(tests)
    reward = UnitTestRewardFunction(margin=margin, execution_config=execution_config, executor=executor)
    if executor is not None and executor.config.margin != margin:
        logger.warning(
            "the executor's margin %s decides R4; a speed-up of %s is also required",
            executor.config.margin,
            margin,
        )
    reference = reward.executor.judge(program, tests, time_it=False)
    if not reference.passed:
        raise ValueError(
            f"the input program does not pass its own tests ({reference.status}: {reference.error})"
        )

    generated = []
    if model is not None:
        model, tok = _load(model, tokenizer, device)
        device = next(model.parameters()).device
        sampling = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
        }
        # `seed` must not reset the caller's RNG streams (CPU, and the model's GPU when it has one).
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        # Half the process's share of the cores on CPU, as in training (see perfrl_trl.execution.cores).
        with (
            torch_threads_on_cpu(device, sandbox_alongside=True, requested=cpu_threads),
            torch.random.fork_rng(devices=rng_devices),
        ):
            if seed is not None:
                torch.manual_seed(seed)
            beams = num_beams if include_beam else 0
            generated = _generate(
                model, tok, make_prompt(program, prefix), n, beams, batch_size, max_prompt_length, sampling
            )

    # Whitespace around a whole program does not change what it does: it must not cost a second sandbox run.
    drafts: dict[str, dict] = {}
    n_unchanged = 0
    for text, truncated, source in generated:
        code = completion_to_code(text)
        if code.strip() == program.strip():
            n_unchanged += 1  # cannot be faster than itself
            continue
        draft = drafts.setdefault(
            code.strip(), {"code": code, "source": source, "truncated": truncated, "count": 0}
        )
        draft["count"] += 1
    if rewrites:
        for label, code in candidate_rewrites(program).items():
            if code is not None:
                drafts.setdefault(
                    code.strip(), {"code": code, "source": f"rewrite:{label}", "truncated": False, "count": 0}
                )
    unique = list(drafts.values())
    scored = (
        reward.score([d["code"] for d in unique], [tests] * len(unique), [program] * len(unique))
        if unique
        else []
    )
    candidates = [Candidate(details=details, **d) for d, details in zip(unique, scored)]

    verified = [c for c in candidates if c.tier == Tier.R4 and (c.details.speedup or 0.0) >= margin]
    baseline = next((c.details.baseline_runtime for c in candidates if c.details.baseline_runtime), None)
    counts = Counter(c.tier for c in candidates)
    tiers = ", ".join(f"{t} {counts[t]}" for t in Tier if counts[t]) or "no candidates"
    common = {
        "margin": margin,
        "candidates": candidates,
        "n_generated": len(generated),
        "n_unchanged": n_unchanged,
    }
    if not verified:
        message = (
            f"no verified faster version: none of {len(candidates)} distinct candidates both passed every test "
            f"and ran at least {margin:g}x faster ({tiers})"
        )
        return OptimizationResult(False, None, None, None, baseline, message=message, **common)
    best = max(verified, key=lambda c: c.details.speedup)
    d = best.details
    origin = (
        f"the generic rewrite {best.source[len('rewrite:') :]}"
        if not best.from_model
        else f"the model ({best.source})"
    )
    message = (
        f"verified faster version from {origin}: {d.speedup:.2f}x faster, passes {d.n_passed}/{d.n_tests} tests "
        f"({len(verified)} of {len(candidates)} distinct candidates verified; {tiers})"
    )
    return OptimizationResult(
        True,
        best.code,
        d.speedup,
        d.runtime,
        d.baseline_runtime,
        message=message,
        source=best.source,
        **common,
    )


def optimize_dataset(
    dataset,
    model: PreTrainedModel | str | os.PathLike | None,
    tokenizer: PreTrainedTokenizerBase | str | None = None,
    *,
    executor: Executor | None = None,
    seed: int = 0,
    progress: bool = True,
    **kwargs,
) -> dict:
    """Run :func:`optimize_program` on every row of ``dataset``, as a user would on each program, and count.

    The model is loaded once. Row ``i`` samples with seed ``seed + i``, so a run can be repeated.

    Args:
        dataset: Rows with ``input_code`` and ``tests`` (``problem_id`` is carried when present); every slow
            program must pass its own tests (e.g. PIE loaded with ``filter_executable=True``).
        model, tokenizer: As in :func:`optimize_program`.
        executor: One executor for every row (default: the shared one for the default settings).
        seed: Base sampling seed.
        progress: A progress bar over the rows.
        **kwargs: More arguments of :func:`optimize_program` (``n``, ``num_beams``, ``max_new_tokens``, ...);
            its defaults are the CLI's.

    Returns:
        ``{"programs", "found", "found_rate", "found_by_model", "found_by_rewrite", "candidate_compile_rate",
        "outcomes"}``: ``found`` counts the programs with a verified faster version, split by where the best one
        came from; ``candidate_compile_rate`` is the share of the model's generations (copies of the input
        included, which compile) that are not tier R1 (``None`` without a model); ``outcomes`` has, per row,
        ``problem_id``, ``found``, ``speedup``, ``source``, ``n_generated``, ``n_compiled``, ``tiers`` and
        ``rewrites`` (each generic rewrite's label and tier).

    Example:
        ```python
        >>> from perfrl_trl.inference import optimize_dataset
        >>> report = optimize_dataset(pie_eval, "path/to/model")  # doctest: +SKIP
        >>> report["found_rate"]  # doctest: +SKIP
        ```
    """
    from tqdm.auto import tqdm

    missing = {"input_code", "tests"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"optimize_dataset: the dataset lacks column(s) {sorted(missing)}")
    if len(dataset) == 0:
        raise ValueError("optimize_dataset: the dataset is empty")
    device = kwargs.pop("device", None)
    if model is not None:
        model, tokenizer = _load(model, tokenizer, device)
    ids = (
        dataset["problem_id"]
        if "problem_id" in dataset.column_names
        else [str(i) for i in range(len(dataset))]
    )
    outcomes = []
    rows = zip(ids, dataset["input_code"], dataset["tests"])
    for i, (pid, program, tests) in enumerate(
        tqdm(rows, total=len(dataset), desc="optimize", disable=not progress)
    ):
        result = optimize_program(
            program, tests, model, tokenizer, executor=executor, seed=seed + i, **kwargs
        )
        compiled = result.n_unchanged + sum(c.count for c in result.candidates if c.tier != Tier.R1)
        outcomes.append(
            {
                "problem_id": str(pid),
                "found": result.found,
                "speedup": result.speedup,
                "source": result.source,
                "n_generated": result.n_generated,
                "n_compiled": compiled,
                "tiers": result.tier_counts,
                "rewrites": {
                    c.source[len("rewrite:") :]: str(c.tier) for c in result.candidates if not c.from_model
                },
            }
        )
    generated = sum(o["n_generated"] for o in outcomes)
    found = sum(o["found"] for o in outcomes)
    by_rewrite = sum(o["found"] and o["source"].startswith("rewrite:") for o in outcomes)
    return {
        "programs": len(outcomes),
        "found": found,
        "found_rate": found / len(outcomes),
        "found_by_model": found - by_rewrite,
        "found_by_rewrite": by_rewrite,
        "candidate_compile_rate": sum(o["n_compiled"] for o in outcomes) / generated if generated else None,
        "outcomes": outcomes,
    }
