"""Candidate generation: how the greedy decodes and samples of a step are batched, side by side.

The RL step generates, per prompt, ``num_greedy_samples`` greedy decodes and ``num_random_samples`` samples
(T=1, top-k 50): per ``generation_batch_size`` prompts, a greedy call, then a sampling call, each running its
decoding loop until its longest row ends (a row that ends early keeps being computed as padding). Arms:

- ``two calls (trainer)``: what the trainer does at ``generation_batch_size`` = all the step's prompts;
- ``one call (tried)``: one call in which a logits processor keeps only the arg-max token on the greedy
  rows (``generate_greedy_and_sampled`` below; an idea, not adopted);
- ``generation_batch_size=1``: the trainer's two calls, one prompt at a time, so that a row running to the
  token limit holds up only its own prompt's rows.

All run on the same batches of real prompts (the bundled benchmark's, all splits), from the bundled SFT
checkpoint (a policy that passes about two thirds of its problems), one torch thread as in
``benchmarks/rrhf_step.py``, interleaved with a rotating order. Each round reseeds torch, so every arm sees the
same random state; the greedy programs of the arms must be identical (checked). Times are process CPU
seconds (robust on a shared machine) with wall time next to them.

Usage:
    python benchmarks/candidate_generation.py                       # 6 rounds of 8 prompts, ~5 min
    python benchmarks/candidate_generation.py --rounds 3 --max-new-tokens 128
    python benchmarks/candidate_generation.py --out benchmarks/results/candidate_generation.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rrhf_step import load_rows
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from perfrl_trl.generation import (
    Completion,
    _strip,
    generate_completions,
    sampling_config,
    tokenize_prompts,
)
from perfrl_trl.models import load_model_and_tokenizer
from perfrl_trl.models.bundled import BUNDLED_CHECKPOINT


class GreedyRows(LogitsProcessor):
    """Leaves only the arg-max token on chosen rows, so that sampling decodes those rows greedily.

    It runs after the processors that greedy search applies too (repetition penalty, n-gram blocking) and
    before the sampling warpers (temperature, top-k, top-p), which all keep the one finite token: a
    multinomial draw then returns exactly the token greedy search would pick.

    Args:
        rows: Boolean mask over the generated rows (``batch * num_return_sequences``); ``True`` = greedy.
    """

    def __init__(self, rows: torch.Tensor):
        self.rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        top = scores.argmax(dim=-1, keepdim=True)
        only_top = torch.full_like(scores, float("-inf")).scatter(-1, top, scores.gather(-1, top))
        return torch.where(self.rows.to(scores.device)[:, None], only_top, scores)


@torch.no_grad()
def generate_greedy_and_sampled(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_inputs: dict[str, torch.Tensor],
    sample_config: GenerationConfig,
    num_greedy: int,
    num_sampled: int,
) -> list[tuple[list[Completion], list[Completion]]]:
    """Greedy decodes and samples of every prompt in one ``generate`` call.

    One batched decoding loop over ``num_greedy + num_sampled`` rows per prompt costs less than a greedy
    call followed by a sampling call (each runs its own loop to its longest row, and on CPU a step of
    more rows costs little more than a step of fewer). The greedy rows are the same tokens a
    ``do_sample=False`` call gives (:class:`GreedyRows`); the samples are ordinary samples.

    Args:
        model: A seq2seq or causal LM (unwrapped from DDP).
        tokenizer: Its tokenizer.
        prompt_inputs: ``input_ids``/``attention_mask`` from :func:`tokenize_prompts`.
        sample_config: The sampling settings (``do_sample=True``). With beams, two calls are made.
        num_greedy: Greedy decodes per prompt (0 or 1 make sense: greedy decoding is deterministic).
        num_sampled: Samples per prompt.

    Returns:
        Per prompt, its greedy completions and its sampled completions.

    Example:
        ```python
        >>> from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig
        >>> from perfrl_trl.generation import generate_greedy_and_sampled, tokenize_prompts
        >>> tok, model = AutoTokenizer.from_pretrained("path/to/model"), AutoModelForSeq2SeqLM.from_pretrained("path/to/model")
        >>> inputs = tokenize_prompts(tok, ["Write faster version:\\nprint(sum(range(10)))"], 256, model.device)
        >>> config = GenerationConfig(max_new_tokens=128, do_sample=True, top_k=50, decoder_start_token_id=0)
        >>> [(greedy, sampled)] = generate_greedy_and_sampled(model, tok, inputs, config, num_greedy=1, num_sampled=2)
        >>> print(greedy[0].text)
        ```
    """
    k = num_greedy + num_sampled
    n_prompts = prompt_inputs["input_ids"].shape[0]
    if k == 0:
        return [([], []) for _ in range(n_prompts)]
    if not sample_config.do_sample or (sample_config.num_beams or 1) > 1:
        # Beam settings (from ``generation_kwargs``): no single loop serves both; decode them apart.
        greedy = generate_completions(
            model, tokenizer, prompt_inputs, sampling_config(sample_config, do_sample=False), num_greedy
        )
        sampled = generate_completions(model, tokenizer, prompt_inputs, sample_config, num_sampled)
        return list(zip(greedy, sampled))
    greedy_rows = (torch.arange(n_prompts * k) % k) < num_greedy
    was_training = model.training
    model.eval()
    try:
        config = sampling_config(sample_config, num_return_sequences=k)
        sequences = model.generate(
            **prompt_inputs,
            generation_config=config,
            logits_processor=LogitsProcessorList([GreedyRows(greedy_rows)]),
        )
    finally:
        model.train(was_training)
    if model.config.is_encoder_decoder:
        sequences = sequences[:, 1:]
    else:
        sequences = sequences[:, prompt_inputs["input_ids"].shape[1] :]
    flat = _strip(sequences, tokenizer, sample_config.max_new_tokens)
    return [
        (flat[i * k : i * k + num_greedy], flat[i * k + num_greedy : (i + 1) * k]) for i in range(n_prompts)
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6, help="batches, each generated by both arms")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per batch (generation_batch_size)")
    parser.add_argument("--greedy", type=int, default=1)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-prompt-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, tok = load_model_and_tokenizer(str(BUNDLED_CHECKPOINT))
    model.eval()
    rows, source = load_rows(args.rounds * args.prompts, args.seed)
    prompts = rows["prompt"]
    sample = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        do_sample=True,
        temperature=1.0,
        top_k=50,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
    )
    greedy = sampling_config(sample, do_sample=False)

    def two_calls(batch):
        inputs = tokenize_prompts(tok, batch, args.max_prompt_length, model.device)
        g = generate_completions(model, tok, inputs, greedy, args.greedy)
        s = generate_completions(model, tok, inputs, sample, args.samples)
        return list(zip(g, s))

    def one_call(batch):
        inputs = tokenize_prompts(tok, batch, args.max_prompt_length, model.device)
        return generate_greedy_and_sampled(model, tok, inputs, sample, args.greedy, args.samples)

    def per_prompt(batch):
        # RRHFConfig(generation_batch_size=1): a row that runs to the token limit holds up only its prompt.
        return [pair for prompt in batch for pair in two_calls([prompt])]

    arms = {
        "two calls (trainer)": two_calls,
        "one call (tried)": one_call,
        "generation_batch_size=1": per_prompt,
    }
    names_all = list(arms)
    times = {name: {"cpu": [], "wall": []} for name in arms}
    tokens = {name: [] for name in arms}
    mismatched = dict.fromkeys(names_all[1:], 0)
    for r in range(args.rounds):
        batch = prompts[r * args.prompts : (r + 1) * args.prompts]
        k = r % len(names_all)
        outs = {}
        for name in names_all[k:] + names_all[:k]:
            torch.manual_seed(args.seed + r)
            c0, w0 = time.process_time(), time.perf_counter()
            outs[name] = arms[name](batch)
            times[name]["cpu"].append(time.process_time() - c0)
            times[name]["wall"].append(time.perf_counter() - w0)
            tokens[name].append(sum(len(c.ids) for g, s in outs[name] for c in (*g, *s)))
        reference = [[c.ids for c in g] for g, _ in outs[names_all[0]]]
        for name in names_all[1:]:
            mismatched[name] += sum(a != [c.ids for c in g] for a, (g, _) in zip(reference, outs[name]))
        line = "  ".join(f"{n}: {times[n]['cpu'][-1]:.1f} cpu-s" for n in arms)
        print(f"round {r + 1}/{args.rounds}  {line}", flush=True)

    base_cpu = statistics.median(times[names_all[0]]["cpu"])
    base_wall = statistics.median(times[names_all[0]]["wall"])
    print(
        f"\n{args.rounds} rounds of {args.prompts} prompts x ({args.greedy} greedy + {args.samples} samples), "
        f"up to {args.max_new_tokens} new tokens, {args.threads} thread(s), data: {source}"
    )
    ratios = {}
    for name in arms:
        cpu, wall = statistics.median(times[name]["cpu"]), statistics.median(times[name]["wall"])
        ratios[name] = {"cpu": cpu / base_cpu, "wall": wall / base_wall}
        print(
            f"  {name:<24} median {cpu:6.2f} cpu-s {wall:6.2f} wall-s  vs the trainer's: {cpu / base_cpu:.2f}x "
            f"CPU, {wall / base_wall:.2f}x wall; tokens/round {statistics.mean(tokens[name]):.0f}"
            + (f"; greedy programs unlike the trainer's: {mismatched[name]}" if name in mismatched else "")
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "data": source,
                    "times": times,
                    "tokens": tokens,
                    "ratios_vs_trainer": ratios,
                    "greedy_mismatches": mismatched,
                },
                indent=1,
            )
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
