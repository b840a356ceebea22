"""What an RRHF training step costs against a plain SFT step, and where a full RL step spends its time.

Part 1, side by side (target: RRHF/SFT at most 1.3x). One collated RRHF batch (``--prompts`` prompts x
``--candidates`` candidates, prompt and completion lengths drawn within +-25% of ``--prompt-len`` and
``--completion-len``, random rewards and sources) is built with the trainer's own
``RRHFCandidateCollator``. Then, interleaved over ``--repeats`` rounds (the order rotates every round):

- ``RRHF``: ``RRHFTrainer.training_step`` on that batch: one forward pass, ``rrhf_loss`` (ranking + tuning
  loss), backward; ``num_items_in_batch`` / ``num_groups_in_batch`` as ``get_batch_samples`` gives them;
- ``SFT``: a plain ``transformers.Trainer.training_step`` on exactly the same padded ``input_ids`` /
  ``attention_mask`` / ``labels`` (and ``position_ids``), with the model's own cross-entropy loss.

A third arm, ``RRHF fused``, is the RRHF step with ``token_log_probs`` swapped for the suggested one-pass
version (``--no-fused-arm`` drops it). All use the same weights, one torch thread, and have their gradients
cleared outside the timed region. Rounds fill ``--budget-s`` per model (at least ``--min-repeats``). The
ratio is taken on medians of process CPU time (robust on a shared machine); the median wall-clock ratio of
the interleaved pairs is printed next to it. The steps differ only in the loss, so
a loss-only microbenchmark on logits of the batch's shape (forward + backward of ``rrhf_loss`` against
``F.cross_entropy``, and the pieces of ``rrhf_loss``) says where any extra time goes; with ``--profile`` (or
when a ratio is over the target) the top operators of both steps are printed from ``torch.profiler``.

Part 2, the full step. ``RRHFTrainer.train()`` for ``--steps`` steps on the bundled benchmark
(``perfrl_trl.data.benchmark.build_benchmark``; a few hand-written slow/fast rows if it cannot be imported),
with the real sandboxed unit-test reward. The per-step ``timing/generate_s``, ``timing/score_wait_s`` and
``timing/forward_backward_s`` metrics are set against the wall time of each step (between ``on_step_end``
callbacks; "other" is the optimizer step, tokenisation, collation and logging). Every collated batch is kept,
and after training a plain SFT ``training_step`` is timed on each, for the (informational) ratio of a full
RRHF step to an SFT step over the same candidate tokens.

Usage:
    python benchmarks/rrhf_step.py
    python benchmarks/rrhf_step.py --models t5-small --repeats 5 --steps 0       # part 1 only, quick
    python benchmarks/rrhf_step.py --out benchmarks/results/rrhf_step.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from perfrl_trl import loss as loss_module
from perfrl_trl.execution import ExecutionConfig, Executor
from perfrl_trl.loss import (
    RRHFLossOptions,
    SourceKind,
    count_normalisers,
    rrhf_loss,
    rrhf_loss_from_token_logps,
    token_log_probs,
)
from perfrl_trl.models import BUNDLED_CHECKPOINT, create_pretrained, load_model_and_tokenizer
from perfrl_trl.rewards import UnitTestRewardFunction
from perfrl_trl.trainer import RRHFConfig, RRHFTrainer

TARGET_RATIO = 1.3
MODEL_KEYS = ("t5-tiny", "t5-small", "decoder-tiny", "decoder-small")
MODEL_INPUTS = ("input_ids", "attention_mask", "labels", "position_ids")


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def _zero_reward(prompts=None, completions=None, **_):
    """A reward that is never called in part 1 (the batch is built by hand), but the trainer needs one."""
    return [0.0] * len(completions or [])


# --------------------------------------------------------------------------------------------------------
# Part 1: one prepared batch, RRHF step against SFT step
# --------------------------------------------------------------------------------------------------------
def make_examples(tok, n_prompts, n_cands, prompt_len, completion_len, seed=0):
    """Random-token prompts and candidates of realistic lengths, one target per prompt, random tiers."""
    rng = random.Random(seed)
    low = max(tok.all_special_ids) + 1
    vocab = len(tok)

    def ids(n):
        return [rng.randrange(low, vocab) for _ in range(n)]

    def around(n):
        return max(1, round(n * rng.uniform(0.75, 1.25)))

    tiers = (0.0, 1.0, 1.3, 2.0)
    examples = []
    for _ in range(n_prompts):
        cands = []
        for k in range(n_cands):
            source = (SourceKind.TARGET, SourceKind.GREEDY)[k] if k < 2 else SourceKind.RANDOM
            reward = rng.choice(tiers[2:]) if source == SourceKind.TARGET else rng.choice(tiers)
            cands.append(
                {"completion_ids": ids(around(completion_len)), "reward": reward, "source": int(source)}
            )
        examples.append({"prompt_ids": ids(around(prompt_len)), "candidates": cands})
    return examples


def _training_args(cls, out_dir, **kw):
    return cls(
        output_dir=str(out_dir),
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_pin_memory=False,
        **kw,
    )


def build_pair(path, out_dir, threads):
    """An RRHFTrainer and a plain Trainer over two copies of the same checkpoint."""
    model, tok = load_model_and_tokenizer(path)
    rrhf = RRHFTrainer(
        model,
        args=_training_args(RRHFConfig, Path(out_dir) / "rrhf", cpu_threads=threads),
        processing_class=tok,
        reward_funcs=[_zero_reward],
    )
    sft_model, _ = load_model_and_tokenizer(path)
    sft = Trainer(model=sft_model, args=_training_args(TrainingArguments, Path(out_dir) / "sft"))
    torch.set_num_threads(threads)  # RRHFTrainer sets it too; the plain Trainer must not change it
    return rrhf, sft, tok


def rrhf_inputs(trainer, batch):
    """What ``get_batch_samples`` hands ``training_step``: the batch plus the step's normalisers."""
    n_items, n_groups = trainer._step_normalisers([batch], trainer.args.device)
    inputs = dict(batch)
    inputs["num_groups_in_batch"] = n_groups
    return inputs, n_items


def sft_inputs(trainer, batch):
    inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
    n_items = trainer._get_num_items_in_batch([inputs], trainer.args.device)
    return inputs, n_items


def timed_step(trainer, inputs, n_items):
    """Wall and CPU seconds (this process: one torch thread) of one ``training_step``, gradients cleared."""
    model = trainer.model
    model.zero_grad(set_to_none=True)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.training_step(model, dict(inputs), n_items)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    model.zero_grad(set_to_none=True)
    return wall, cpu


class _FusedTokenLogProbs(torch.autograd.Function):
    """``log softmax(logits)[labels]`` whose backward is one pass: ``g * (onehot - softmax)``.

    The suggested replacement for ``token_log_probs`` on float32 logits: autograd of ``gather - logsumexp``
    allocates three logits-sized tensors in backward (``exp``, the product, the scattered gather gradient) and
    adds two of them; this writes one. It saves only the logits (already alive) and ``[N, T, 1]`` sums.
    """

    @staticmethod
    def forward(ctx, logits, index, mask):
        lse = torch.logsumexp(logits, dim=-1, keepdim=True)
        out = (logits.gather(-1, index) - lse).squeeze(-1).masked_fill(~mask, 0.0)
        ctx.save_for_backward(logits, lse, index, mask)
        return out

    @staticmethod
    def backward(ctx, grad):
        logits, lse, index, mask = ctx.saved_tensors
        g = grad.masked_fill(~mask, 0.0).unsqueeze(-1)
        out = torch.sub(logits, lse).exp_().mul_(-g)
        return out.scatter_add_(-1, index, g), None, None


def fused_token_log_probs(logits, labels, ignore_index=-100):
    """Drop-in for ``perfrl_trl.loss.token_log_probs`` (float32/64 only; otherwise the original)."""
    if logits.dtype not in (torch.float32, torch.float64):
        return _ORIGINAL_TOKEN_LOG_PROBS(logits, labels, ignore_index)
    mask = labels != ignore_index
    index = labels.masked_fill(~mask, 0).unsqueeze(-1)
    return _FusedTokenLogProbs.apply(logits, index, mask), mask


def ce_token_log_probs(logits, labels, ignore_index=-100):
    """The one-line alternative: per-token ``F.cross_entropy(reduction="none")`` (fused log-softmax + NLL)."""
    mask = labels != ignore_index
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=ignore_index,
        reduction="none",
    )
    return -nll.view(labels.shape), mask


_ORIGINAL_TOKEN_LOG_PROBS = loss_module.token_log_probs


@contextlib.contextmanager
def patched_token_log_probs(fn):
    """``rrhf_loss`` looks ``token_log_probs`` up in its module: swap it for one step."""
    loss_module.token_log_probs = fn
    try:
        yield
    finally:
        loss_module.token_log_probs = _ORIGINAL_TOKEN_LOG_PROBS


def loss_microbench(trainer, batch, repeats):
    """CPU seconds of forward + backward of the losses alone, on leaf logits of the batch's real shape."""
    model = trainer.model
    model.eval()
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS and k != "labels"}
        if trainer.is_encoder_decoder:
            dec = model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
            logits = model(**inputs, decoder_input_ids=dec).logits
        else:
            logits = model(**inputs).logits
    model.train()
    labels = trainer._loss_labels(batch["labels"])
    rewards, sources, gids = batch["rewards"], batch["sources"], batch["group_ids"]
    n_items, _ = count_normalisers(labels, rewards, sources, gids)
    a = trainer.args

    def rrhf(differing=False, logps=None):
        def run(x):
            options = RRHFLossOptions(rank_weight=a.rank_loss_weight, rank_on_differing_tokens=differing)
            kw = dict(options=options, num_items_in_batch=n_items)
            if logps is None:
                return rrhf_loss(x, labels, rewards, sources, gids, **kw).loss
            token_logps, _ = logps(x, labels)
            return rrhf_loss_from_token_logps(token_logps, labels, rewards, sources, gids, **kw).loss

        return run

    def cross_entropy(x):
        # What the models' own loss does: mean token NLL over every candidate (ignore_index=-100).
        return F.cross_entropy(x.reshape(-1, x.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)

    cases = {
        "cross_entropy (SFT loss)": cross_entropy,
        "rrhf_loss (as shipped)": rrhf(),
        "rrhf_loss, rank_on_differing_tokens": rrhf(True),
        "  of which token_log_probs": lambda x: token_log_probs(x, labels)[0].sum(),
        "rrhf_loss, per-token F.cross_entropy": rrhf(logps=ce_token_log_probs),
        "rrhf_loss, fused token log-probs": rrhf(logps=fused_token_log_probs),
    }
    # The suggested variants must give the shipped loss and gradient.
    grads = {}
    for name in (
        "rrhf_loss (as shipped)",
        "rrhf_loss, per-token F.cross_entropy",
        "rrhf_loss, fused token log-probs",
    ):
        x = logits.detach().clone().requires_grad_(True)
        value = cases[name](x)
        value.backward()
        grads[name] = (value.detach(), x.grad)
    ref_loss, ref_grad = grads.pop("rrhf_loss (as shipped)")
    for name, (value, grad) in grads.items():
        if not (
            torch.allclose(value, ref_loss, rtol=1e-5, atol=1e-6)
            and torch.allclose(grad, ref_grad, atol=1e-6)
        ):
            raise AssertionError(f"{name} differs from rrhf_loss: {value} vs {ref_loss}")
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            x = logits.detach().clone().requires_grad_(True)
            c0 = time.process_time()
            fn(x).backward()
            times[name].append(time.process_time() - c0)
    return {name: _median(v) for name, v in times.items()}, tuple(logits.shape)


def profile_step(trainer, inputs, n_items, rows=8):
    from torch.profiler import ProfilerActivity, profile

    trainer.model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.training_step(trainer.model, dict(inputs), n_items)
    trainer.model.zero_grad(set_to_none=True)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=36)


ARMS = ("rrhf", "sft", "rrhf_fused")


def side_by_side(key, root, args):
    arch, size = key.split("-", 1)
    path = create_pretrained(arch, size, Path(root) / key, overwrite=True)
    rrhf, sft, tok = build_pair(path, Path(root) / f"{key}-out", args.threads)
    examples = make_examples(
        tok, args.prompts, args.candidates, args.prompt_len, args.completion_len, args.seed
    )
    batch = rrhf.candidate_collator(examples)
    r_in, r_items = rrhf_inputs(rrhf, batch)
    s_in, s_items = sft_inputs(sft, batch)

    def run(arm):
        if arm == "sft":
            return timed_step(sft, s_in, s_items)
        if arm == "rrhf_fused":
            with patched_token_log_probs(fused_token_log_probs):
                return timed_step(rrhf, r_in, r_items)
        return timed_step(rrhf, r_in, r_items)

    arms = ARMS if args.fused_arm else ARMS[:2]
    t0 = time.perf_counter()
    for _ in range(max(args.warmup, 1)):
        for arm in arms:
            run(arm)
    round_s = (time.perf_counter() - t0) / max(args.warmup, 1)
    # Enough rounds to fill --budget-s (wall) per model, within [--min-repeats, --max-repeats].
    repeats = args.repeats or min(max(int(args.budget_s / round_s), args.min_repeats), args.max_repeats)
    wall = {arm: [] for arm in arms}
    cpu = {arm: [] for arm in arms}
    for r in range(repeats):
        # Rotate the order, so that no arm always runs right after another one.
        for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:
            w, c = run(arm)
            wall[arm].append(w)
            cpu[arm].append(c)
    losses, logits_shape = loss_microbench(rrhf, batch, args.loss_repeats)
    result = {
        "model": key,
        "repeats": repeats,
        "params": sum(p.numel() for p in rrhf.model.parameters()),
        "batch": {
            "candidates": int(batch["input_ids"].shape[0]),
            "input_ids": list(batch["input_ids"].shape),
            "labels": list(batch["labels"].shape),
            "scored_tokens": int((batch["labels"] != -100).sum()),
            "logits": list(logits_shape),
        },
        "wall_s": {arm: _median(v) for arm, v in wall.items()},
        "cpu_s": {arm: _median(v) for arm, v in cpu.items()},
        "ratio_wall": _median(wall["rrhf"]) / _median(wall["sft"]),
        "ratio_cpu": _median(cpu["rrhf"]) / _median(cpu["sft"]),
        "ratio_paired_wall": _median([a / b for a, b in zip(wall["rrhf"], wall["sft"])]),
        "all_wall_s": wall,
        "all_cpu_s": cpu,
        "loss_fwd_bwd_cpu_s": losses,
    }
    if "rrhf_fused" in arms:
        result["ratio_fused_cpu"] = _median(cpu["rrhf_fused"]) / _median(cpu["sft"])
        result["ratio_fused_wall"] = _median(wall["rrhf_fused"]) / _median(wall["sft"])
    result["ratio"] = max(result["ratio_cpu"], result["ratio_paired_wall"])
    if args.profile or result["ratio"] > TARGET_RATIO:
        result["profile"] = {
            "rrhf": profile_step(rrhf, r_in, r_items),
            "sft": profile_step(sft, s_in, s_items),
        }
    return result


def print_part1(results):
    print(
        f"\n== Part 1: RRHFTrainer.training_step vs Trainer.training_step (cross-entropy) on the same batch "
        f"(target <= {TARGET_RATIO}x)"
    )
    print(
        "CPU = process CPU time (one torch thread; robust when the machine is shared), wall = elapsed; "
        "medians over the repeats.\n'fused' = the RRHF step with the suggested one-pass token log-probs."
    )
    head = (
        f"{'model':<14} {'params':>7} {'candidates x len':>17} {'logits':>16} {'RRHF cpu':>9} {'SFT cpu':>8} "
        f"{'ratio':>6} {'wall ratio':>10} {'fused':>6}  ok"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        b = r["batch"]
        shape = f"{b['candidates']} x {b['input_ids'][1]}"
        if r["model"].startswith("t5"):
            shape += f"|{b['labels'][1]}"
        fused = f"{r['ratio_fused_cpu']:>5.2f}x" if "ratio_fused_cpu" in r else "     -"
        ok = "yes" if r["ratio"] <= TARGET_RATIO else "NO"
        print(
            f"{r['model']:<14} {r['params'] / 1e6:>6.2f}M {shape:>17} {'x'.join(map(str, b['logits'])):>16} "
            f"{r['cpu_s']['rrhf']:>8.3f}s {r['cpu_s']['sft']:>7.3f}s {r['ratio_cpu']:>5.2f}x "
            f"{r['ratio_paired_wall']:>9.2f}x {fused}  {ok}"
        )
    print(
        "\nLoss alone, forward + backward on the batch's logits (CPU ms; share of the SFT step in brackets):"
    )
    names = list(results[0]["loss_fwd_bwd_cpu_s"])
    print(f"{'':<38}" + "".join(f"{r['model']:>18}" for r in results))
    for name in names:
        cells = "".join(
            f"{r['loss_fwd_bwd_cpu_s'][name] * 1e3:>9.0f} ({r['loss_fwd_bwd_cpu_s'][name] / r['cpu_s']['sft']:>5.1%})"
            for r in results
        )
        print(f"{name:<38}{cells}")
    for r in results:
        if "profile" in r:
            print(f"\n-- torch.profiler, {r['model']}, RRHF step --\n{r['profile']['rrhf']}")
            print(f"-- torch.profiler, {r['model']}, SFT step --\n{r['profile']['sft']}")


# --------------------------------------------------------------------------------------------------------
# Part 2: full RRHF steps with the real reward
# --------------------------------------------------------------------------------------------------------
SLOW_SUM = "n = int(input())\ns = 0\nfor i in range(n + 1):\n    s += i\nprint(s)\n"
FAST_SUM = "n = int(input())\nprint(n * (n + 1) // 2)\n"
SLOW_JOIN = "n = int(input())\ns = ''\nfor i in range(n):\n    s = s + str(i % 10)\nprint(len(s), s[-5:])\n"
FAST_JOIN = "n = int(input())\ns = ''.join(str(i % 10) for i in range(n))\nprint(len(s), s[-5:])\n"


def _fallback_rows(n):
    rows = []
    for i in range(n):
        slow, fast = (SLOW_SUM, FAST_SUM) if i % 2 == 0 else (SLOW_JOIN, FAST_JOIN)
        size = 200_000 + 1000 * i
        if slow is SLOW_SUM:
            out = f"{size * (size + 1) // 2}\n"
        else:
            s = "".join(str(k % 10) for k in range(size))
            out = f"{len(s)} {s[-5:]}\n"
        rows.append(
            {
                "prompt": f"Write faster version:\n{slow}# case {i}\n",
                "input_code": slow,
                "target_code": fast,
                "tests": [{"input": f"{size}\n", "output": out}],
            }
        )
    return rows


def load_rows(n, seed):
    """``n`` rows of the bundled benchmark (all its splits: only timing matters here), shuffled."""
    from datasets import Dataset, concatenate_datasets

    try:
        from perfrl_trl.data.benchmark import FAMILIES, build_benchmark
    except ImportError as exc:
        print(f"(bundled benchmark unavailable: {exc}; using hand-written rows)")
        return Dataset.from_list(_fallback_rows(n)), "fallback rows"
    per_family = max(1, math.ceil(n / len(FAMILIES)))
    splits = build_benchmark(n_per_family=per_family, seed=seed)
    rows = concatenate_datasets([d for d in splits.values() if len(d)]).shuffle(seed=seed)
    return rows.select(range(min(n, len(rows)))), f"build_benchmark(n_per_family={per_family})"


class StepClock(TrainerCallback):
    def __init__(self):
        self.last, self.steps = None, []

    def on_train_begin(self, args, state, control, **kw):
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        now = time.perf_counter()
        self.steps.append(now - self.last)
        self.last = now


def full_steps(root, args, ahead=False):
    if args.full_model == "bundled":
        path = str(BUNDLED_CHECKPOINT)  # a policy that passes about two thirds of its problems
    else:
        arch, size = args.full_model.split("-", 1)
        path = create_pretrained(arch, size, Path(root) / f"full-{args.full_model}", overwrite=True)
    t0 = time.perf_counter()
    data, source = load_rows(args.steps * args.prompts, args.seed)
    data_s = time.perf_counter() - t0
    model, tok = load_model_and_tokenizer(path)
    clock = StepClock()
    config = _training_args(
        RRHFConfig,
        Path(root) / "full-out",
        max_steps=args.steps,
        per_device_train_batch_size=args.prompts,
        learning_rate=1e-4,
        logging_steps=1,
        cpu_threads=args.threads,
        max_prompt_length=args.full_prompt_limit,
        max_completion_length=args.full_completion_limit,
        num_random_samples=max(args.candidates - 2, 0),
        num_greedy_samples=1,
        include_target=True,
        seed=args.seed,
        generate_ahead=ahead,
    )
    # A fresh executor per run: a second run must not find the first one's verdicts in the shared cache.
    execution = ExecutionConfig(**config.execution_config_kwargs())
    executor = Executor(execution)
    reward = UnitTestRewardFunction(config.reward_tier_values, execution_config=execution, executor=executor)
    trainer = RRHFTrainer(
        model, args=config, train_dataset=data, processing_class=tok, callbacks=[clock], reward_funcs=[reward]
    )
    trainer.remove_callback(PrinterCallback)  # the logs are kept in trainer.state.log_history
    batches = []
    score_and_collate = trainer._score_and_collate

    def keep(generated):
        batch = score_and_collate(generated)
        batches.append({k: v.clone() for k, v in batch.items()})
        return batch

    trainer._score_and_collate = keep
    generate, generate_calls, wait_calls = trainer._generate, [], []

    def timed_generate(rows):
        t = time.perf_counter()
        out = generate(rows)
        generate_calls.append((trainer.state.global_step, time.perf_counter() - t))
        return out

    def timed_finish(pending, columns, finish=trainer.scorer.finish):
        t = time.perf_counter()
        out = finish(pending, columns)
        wait_calls.append((trainer.state.global_step, time.perf_counter() - t))
        return out

    trainer._generate, trainer.scorer.finish = timed_generate, timed_finish
    t0 = time.perf_counter()
    try:
        trainer.train()
    finally:
        executor.close()
    train_s = time.perf_counter() - t0
    logs = [h for h in trainer.state.log_history if "timing/forward_backward_s" in h]
    # Per step, summed: the logged timings are means over a logging interval, and with generate_ahead the
    # first step generates twice and the last not at all.
    generate_s, wait_s = [0.0] * len(logs), [0.0] * len(logs)
    for step, seconds in generate_calls:
        generate_s[min(step, len(logs) - 1)] += seconds
    for step, seconds in wait_calls:
        wait_s[min(step, len(logs) - 1)] += seconds
    parts = {
        "generate": generate_s,
        "score_wait": wait_s,
        "forward_backward": [h["timing/forward_backward_s"] for h in logs],
    }
    steps = clock.steps[: len(logs)]
    parts["other"] = [s - sum(p[i] for p in parts.values()) for i, s in enumerate(steps)]

    # SFT training_step on every batch the run collated, on a copy of the trained model.
    sft = Trainer(
        model=copy.deepcopy(trainer.model), args=_training_args(TrainingArguments, Path(root) / "full-sft")
    )
    torch.set_num_threads(args.threads)
    sft_s = []
    if batches:
        timed_step(sft, *sft_inputs(sft, batches[0]))  # warm-up
    for batch in batches:
        sft_s.append(timed_step(sft, *sft_inputs(sft, batch)))
    rewards = [h.get("reward") for h in logs]
    return {
        "model": args.full_model,
        "generate_ahead": ahead,
        "data": source,
        "data_build_s": data_s,
        "steps": len(steps),
        "prompts_per_step": args.prompts,
        "candidates_per_prompt": config.num_candidates_per_prompt,
        "candidates_shape": [list(b["labels"].shape) for b in batches],
        "train_s": train_s,
        "step_s": steps,
        "parts_s": parts,
        "reward_mean": rewards,
        "compile_rate": [h.get("candidates/compile_rate") for h in logs],
        "truncation_rate": [h.get("candidates/truncation_rate") for h in logs],
        "sft_step_wall_s": [w for w, _ in sft_s],
        "sft_step_cpu_s": [c for _, c in sft_s],
    }


def print_part2(r):
    steps = r["step_s"]
    print(
        f"\n== Part 2: {r['steps']} full RRHF steps{' (generate_ahead)' if r.get('generate_ahead') else ''}, "
        f"{r['model']}, {r['prompts_per_step']} prompts x "
        f"{r['candidates_per_prompt']} candidates, data: {r['data']} (built in {r['data_build_s']:.0f} s), "
        "real sandboxed reward"
    )
    later = slice(1, None) if len(steps) > 1 else slice(None)
    total, total_later = sum(steps), sum(steps[later])
    print(f"{'part':<18} {'total s':>8} {'share':>7} {'share, steps 2+':>16} {'median s':>9}")
    for name, vals in r["parts_s"].items():
        print(
            f"{name:<18} {sum(vals):>8.2f} {sum(vals) / total:>7.1%} {sum(vals[later]) / total_later:>16.1%} "
            f"{_median(vals):>9.3f}"
        )
    print(f"{'step (wall)':<18} {total:>8.2f} {1:>7.0%} {1:>16.0%} {_median(steps):>9.3f}")
    print("per step (s):  " + "  ".join(f"{s:.2f}" for s in steps))
    print("batch labels:  " + "  ".join("x".join(map(str, s)) for s in r["candidates_shape"]))
    print("compile rate:  " + "  ".join(f"{c:.2f}" for c in r["compile_rate"] if c is not None))
    print("trunc. rate:   " + "  ".join(f"{c:.2f}" for c in r["truncation_rate"] if c is not None))
    med_sft = _median(r["sft_step_wall_s"])
    med_fb = _median(r["parts_s"]["forward_backward"])
    print(
        f"SFT training_step on the same {len(r['sft_step_wall_s'])} batches, afterwards: median {med_sft:.3f} s "
        f"(RRHF forward/backward in training: {med_fb:.3f} s, {med_fb / med_sft:.2f}x); "
        f"full RRHF step / SFT step = {_median(steps) / med_sft:.1f}x (informational)"
    )


# --------------------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--models", nargs="*", default=list(MODEL_KEYS), choices=MODEL_KEYS, help="part 1 models (none: skip)"
    )
    p.add_argument("--prompts", type=int, default=8, help="prompts per batch (part 1 and part 2)")
    p.add_argument("--candidates", type=int, default=4, help="candidates per prompt (target+greedy+random)")
    p.add_argument("--prompt-len", type=int, default=150)
    p.add_argument("--completion-len", type=int, default=120)
    p.add_argument("--repeats", type=int, default=0, help="timed rounds per model; 0: from --budget-s")
    p.add_argument("--budget-s", type=float, default=20.0, help="wall seconds of timed rounds per model")
    p.add_argument("--min-repeats", type=int, default=3)
    p.add_argument("--max-repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--loss-repeats", type=int, default=3, help="repeats of the loss-only microbenchmark")
    p.add_argument(
        "--no-fused-arm",
        dest="fused_arm",
        action="store_false",
        help="skip the third arm (the RRHF step with the suggested fused token log-probs)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: see RRHFConfig.cpu_threads)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler tables of both steps")
    p.add_argument("--steps", type=int, default=10, help="full RRHF steps in part 2 (0 skips part 2)")
    p.add_argument(
        "--full-model",
        default="t5-small",
        choices=[*MODEL_KEYS, "bundled"],
        help="part 2 model: a new one of a factory size, or the bundled SFT checkpoint",
    )
    p.add_argument(
        "--generate-ahead",
        choices=["off", "on", "both"],
        default="both",
        help="part 2: RRHFConfig.generate_ahead off (the on-policy loop), on, or both runs one after the other",
    )
    p.add_argument("--full-prompt-limit", type=int, default=256)
    p.add_argument("--full-completion-limit", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    hf_logging.set_verbosity_error()
    logging.getLogger("perfrl_trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    out = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rrhf-step-") as root:
        part1 = []
        for key in args.models:
            t0 = time.perf_counter()
            part1.append(side_by_side(key, root, args))
            print(f"[{key}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr)
        out["side_by_side"] = part1
        if part1:
            print_part1(part1)
        if args.steps > 0 and args.generate_ahead in ("off", "both"):
            out["full_step"] = full_steps(root, args)
            print_part2(out["full_step"])
        if args.steps > 0 and args.generate_ahead in ("on", "both"):
            out["full_step_ahead"] = full_steps(root, args, ahead=True)
            print_part2(out["full_step_ahead"])
    out["runtime_s"] = time.perf_counter() - t_start
    print(f"\n(total {out['runtime_s']:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
