"""What the RRHF update's forward and backward pass costs on the candidates a bundled checkpoint really samples:
the trainer's pass (each prompt encoded once, rows in chunks of similar length) against one padded pass.

For each of ``--batches`` batches of ``--prompts`` tests-only prompts of the bundled benchmark (the compare
preset's split), the checkpoint samples ``--samples`` candidates per prompt and adds its greedy decode, with the
compare preset's limits, and the trainer's collator pads them into one batch. Then, interleaved over
``--repeats`` rounds with the order alternating, each batch's token log-probabilities are computed and a loss
over them is backpropagated, by `candidate_token_logps` with ``single_pass=True`` (one padded pass, as a
wrapped model runs) and with the trainer's defaults. The two give the same log-probabilities (checked here on
every batch). Printed per model: the medians of process CPU time and of wall time per batch, their ratios, and
the share of each padded batch that is padding or a prompt's copy.

Usage:
    python benchmarks/update_forward.py
    python benchmarks/update_forward.py --models bundled --batches 2 --repeats 2     # quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from perfrl_trl.collator import RRHFCandidateCollator
from perfrl_trl.data import tests_only_split
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.generation import (
    base_generation_config,
    generate_completions,
    sampling_config,
    tokenize_prompts,
)
from perfrl_trl.models import BUNDLED_CHECKPOINTS, load_model_and_tokenizer
from perfrl_trl.presets import preset_defaults
from perfrl_trl.reporting import provenance
from perfrl_trl.trainer import RRHFConfig
from perfrl_trl.trainer.forward import candidate_token_logps

ARMS = ("one padded pass", "shared and chunked")


def sampled_batches(model, tokenizer, rows, config: RRHFConfig, n_batches: int, seed: int) -> list[dict]:
    """Collated batches of the checkpoint's own candidates: `num_random_samples` samples and the greedy decode."""
    seq2seq = model.config.is_encoder_decoder
    collator = RRHFCandidateCollator.from_tokenizer(
        tokenizer,
        is_encoder_decoder=seq2seq,
        max_prompt_length=config.max_prompt_length,
        max_completion_length=config.max_completion_length,
    )
    base = base_generation_config(model, tokenizer, config)
    sample = sampling_config(base, do_sample=True, temperature=config.temperature, top_k=config.top_k)
    greedy = sampling_config(base, do_sample=False, num_beams=1)
    size = config.per_device_train_batch_size
    batches = []
    torch.manual_seed(seed)
    for b in range(n_batches):
        prompts = rows[b * size : (b + 1) * size]["prompt"]
        inputs = tokenize_prompts(tokenizer, prompts, config.max_prompt_length, torch.device("cpu"))
        with torch.no_grad():
            samples = generate_completions(model, tokenizer, inputs, sample, config.num_random_samples)
            greedies = generate_completions(model, tokenizer, inputs, greedy, 1)
        examples = []
        for i, prompt_ids in enumerate(inputs["input_ids"].tolist()):
            mask = inputs["attention_mask"][i].tolist()
            candidates = samples[i] + greedies[i]
            examples.append(
                {
                    "prompt_ids": [t for t, m in zip(prompt_ids, mask) if m],
                    "candidates": [
                        {"completion_ids": c.ids, "reward": float(k), "truncated": c.truncated}
                        for k, c in enumerate(candidates)
                    ],
                }
            )
        batches.append(collator(examples))
        print(f"  batch {b + 1}/{n_batches}: {batches[-1]['labels'].shape[0]} rows", flush=True)
    return batches


def waste(batch: dict, seq2seq: bool) -> float:
    """The share of the one padded pass's positions that are padding or a repeated prompt."""
    n = batch["labels"].shape[0]
    groups = int(batch["group_ids"].max()) + 1
    if seq2seq:
        prompt_total = batch["input_ids"].numel()
        prompt_needed = int(batch["attention_mask"].sum()) * groups / n
        decoder_total = batch["labels"].numel()
        decoder_needed = int((batch["labels"] != -100).sum())
        return 1 - (prompt_needed + decoder_needed) / (prompt_total + decoder_total)
    return 1 - int(batch["attention_mask"].sum()) / batch["attention_mask"].numel()


def step(model, batch: dict, seq2seq: bool, single_pass: bool) -> tuple[torch.Tensor, float, float]:
    """Token log-probabilities and a backward pass through them; returns them, CPU and wall seconds."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    model.zero_grad(set_to_none=True)
    cpu, wall = time.process_time(), time.perf_counter()
    logps = candidate_token_logps(
        model,
        inputs,
        batch["labels"],
        batch["group_ids"],
        is_encoder_decoder=seq2seq,
        single_pass=single_pass,
    )
    logps.sum().backward()
    return logps.detach(), time.process_time() - cpu, time.perf_counter() - wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="bundled,bundled-causal", help=f"Of {sorted(BUNDLED_CHECKPOINTS)}."
    )
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    made_by = provenance()
    defaults = preset_defaults("compare")
    names = {f for f in RRHFConfig.__dataclass_fields__}
    config = RRHFConfig(
        **{k: v for k, v in defaults.items() if k in names and k not in ("report_to",)}, report_to=[]
    )
    data = build_benchmark(n_per_family=defaults["n_per_family"], seed=args.seed)
    _, _, rl_train = tests_only_split(
        data["train"], defaults["tests_only_fraction"], defaults["rl_prompts"], args.seed
    )
    results = {"provenance": made_by, "threads": torch.get_num_threads(), "models": {}}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model, tokenizer = load_model_and_tokenizer(BUNDLED_CHECKPOINTS[name])
        seq2seq = model.config.is_encoder_decoder
        print(f"{name}: sampling {args.batches} batches of the checkpoint's candidates", flush=True)
        batches = sampled_batches(model, tokenizer, rl_train, config, args.batches, args.seed)
        model.train()
        times = {arm: {"cpu": [], "wall": []} for arm in ARMS}
        for r in range(args.repeats):
            for b, batch in enumerate(batches):
                order = ARMS if (r + b) % 2 == 0 else ARMS[::-1]
                got = {}
                for arm in order:
                    got[arm], cpu, wall = step(model, batch, seq2seq, single_pass=arm == ARMS[0])
                    times[arm]["cpu"].append(cpu)
                    times[arm]["wall"].append(wall)
                torch.testing.assert_close(got[ARMS[1]], got[ARMS[0]], rtol=1e-4, atol=1e-4)
        med = {arm: {k: statistics.median(v) for k, v in t.items()} for arm, t in times.items()}
        row = {
            "rows_per_batch": [int(b["labels"].shape[0]) for b in batches],
            "padded_shape": [list(b["labels"].shape) for b in batches],
            "wasted_share": [waste(b, seq2seq) for b in batches],
            "median_s": med,
            "cpu_ratio": med[ARMS[0]]["cpu"] / med[ARMS[1]]["cpu"],
            "wall_ratio": med[ARMS[0]]["wall"] / med[ARMS[1]]["wall"],
        }
        results["models"][name] = row
        print(
            f"{name}: one padded pass {med[ARMS[0]]['wall']:.2f}s wall ({med[ARMS[0]]['cpu']:.2f}s CPU), "
            f"shared and chunked {med[ARMS[1]]['wall']:.2f}s ({med[ARMS[1]]['cpu']:.2f}s): "
            f"{row['wall_ratio']:.2f}x wall, {row['cpu_ratio']:.2f}x CPU; padding and prompt copies "
            f"{100 * statistics.mean(row['wasted_share']):.0f}% of the padded batch",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
