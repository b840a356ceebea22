"""Sampling candidates: transformers' own sampler against the inverse-CDF draw `generate_completions` uses.

Per round, ``--prompts`` tests-only prompts of the bundled benchmark (the compare preset's split) get
``--samples`` samples each (temperature 1, top-k 50, the compare preset's limits) from the bundled checkpoint,
once by ``model.generate(do_sample=True)`` (``torch.multinomial``, which on CPU draws an exponential variate
for every vocabulary entry) and once by `perfrl_trl.generation.generate_completions` (temperature, top-k and
top-p warpers, then one uniform per row against the cumulative probabilities). Both draw from the same
distribution; their samples differ because they use the random stream differently, so the script prints each
arm's tokens per round and share of samples cut at the limit beside the times. Arms alternate in order, each
round reseeds torch, one torch thread (the trainer's on 2 cores, with the sandbox alongside).

Usage:
    python benchmarks/sampling.py                                   # 8 rounds of 8 prompts x 4 samples
    python benchmarks/sampling.py --rounds 2                        # quick
    python benchmarks/sampling.py --out benchmarks/results/sampling.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from perfrl_trl.data import tests_only_split
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.generation import (
    _strip,
    base_generation_config,
    generate_completions,
    sampling_config,
    tokenize_prompts,
)
from perfrl_trl.models import BUNDLED_CHECKPOINT, load_model_and_tokenizer
from perfrl_trl.presets import preset_defaults
from perfrl_trl.reporting import provenance
from perfrl_trl.trainer import RRHFConfig

ARMS = ("transformers' sampler", "inverse-CDF draw")


@torch.no_grad()
def transformers_sampler(model, tokenizer, inputs, config, k):
    """`generate_completions` as it was: ``model.generate`` samples, ``num_return_sequences=k``."""
    sequences = model.generate(**inputs, generation_config=sampling_config(config, num_return_sequences=k))
    flat = _strip(sequences[:, 1:], tokenizer, config.max_new_tokens)
    return [flat[i * k : (i + 1) * k] for i in range(len(flat) // k)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    made_by = provenance()
    torch.set_num_threads(args.threads)
    defaults = preset_defaults("compare")
    config = RRHFConfig(
        "unused",
        max_completion_length=defaults["max_completion_length"],
        max_prompt_length=defaults["max_prompt_length"],
        report_to=[],
    )
    data = build_benchmark(n_per_family=defaults["n_per_family"], seed=args.seed)
    _, _, rows = tests_only_split(
        data["train"], defaults["tests_only_fraction"], defaults["rl_prompts"], args.seed
    )
    model, tok = load_model_and_tokenizer(str(BUNDLED_CHECKPOINT))
    model.eval()
    sample = sampling_config(
        base_generation_config(model, tok, config),
        do_sample=True,
        temperature=config.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
    )
    arms = {ARMS[0]: transformers_sampler, ARMS[1]: generate_completions}
    times = {arm: {"cpu": [], "wall": []} for arm in ARMS}
    tokens = {arm: [] for arm in ARMS}
    cut = {arm: [] for arm in ARMS}
    steps = {arm: [] for arm in ARMS}
    for r in range(args.rounds):
        prompts = list(rows[r * args.prompts : (r + 1) * args.prompts]["prompt"])
        inputs = tokenize_prompts(tok, prompts, config.max_prompt_length, torch.device("cpu"))
        for arm in ARMS if r % 2 == 0 else ARMS[::-1]:
            torch.manual_seed(args.seed + r)
            cpu, wall = time.process_time(), time.perf_counter()
            groups = arms[arm](model, tok, inputs, sample, args.samples)
            times[arm]["cpu"].append(time.process_time() - cpu)
            times[arm]["wall"].append(time.perf_counter() - wall)
            flat = [c for group in groups for c in group]
            assert len(groups) == len(prompts) and len(flat) == len(prompts) * args.samples
            tokens[arm].append(sum(len(c.ids) + 1 for c in flat))
            cut[arm].append(sum(c.truncated for c in flat) / len(flat))
            steps[arm].append(max(len(c.ids) + 1 for c in flat))  # the loop runs to its longest row
        print(
            f"round {r + 1}/{args.rounds}: "
            + "  ".join(f"{arm} {times[arm]['wall'][-1]:.1f}s ({tokens[arm][-1]} tokens)" for arm in ARMS),
            flush=True,
        )
    # Per decoding step of the batch, since the two arms' samples (and so their lengths) differ.
    per_step = {arm: [w / n for w, n in zip(times[arm]["wall"], steps[arm])] for arm in ARMS}
    med = {
        arm: {
            "cpu_s": statistics.median(times[arm]["cpu"]),
            "wall_s": statistics.median(times[arm]["wall"]),
            "wall_ms_per_step": 1000 * statistics.median(per_step[arm]),
            "tokens_per_round": statistics.mean(tokens[arm]),
            "truncated_share": statistics.mean(cut[arm]),
        }
        for arm in ARMS
    }
    ratio = {
        "wall": med[ARMS[0]]["wall_s"] / med[ARMS[1]]["wall_s"],
        "cpu": med[ARMS[0]]["cpu_s"] / med[ARMS[1]]["cpu_s"],
        "wall_per_step": med[ARMS[0]]["wall_ms_per_step"] / med[ARMS[1]]["wall_ms_per_step"],
    }
    print(
        f"\n{args.rounds} rounds of {args.prompts} prompts x {args.samples} samples, up to "
        f"{config.max_completion_length} new tokens, {args.threads} thread(s), medians per round:"
    )
    for arm in ARMS:
        m = med[arm]
        print(
            f"  {arm:<22} {m['wall_s']:6.2f} wall-s {m['cpu_s']:6.2f} cpu-s  {m['wall_ms_per_step']:.1f} ms per "
            f"decoding step; {m['tokens_per_round']:.0f} tokens a round, {100 * m['truncated_share']:.0f}% cut at the limit"
        )
    print(
        f"  transformers' sampler / inverse-CDF draw: {ratio['wall']:.2f}x wall, {ratio['cpu']:.2f}x CPU, "
        f"{ratio['wall_per_step']:.2f}x wall per decoding step"
    )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(
                {
                    "provenance": made_by,
                    "settings": vars(args),
                    "times": times,
                    "tokens": tokens,
                    "steps": steps,
                    "medians": med,
                    "ratios": ratio,
                },
                fh,
                indent=1,
            )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
