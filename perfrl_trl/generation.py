"""Generation for seq2seq and decoder-only models: the trainer's candidates (the "generate" step of Figure 1),
and the one beam-search evaluation that `RRHFTrainer.evaluate` and `perfrl_trl.comparison.evaluate_models`
both run ([`beam_programs`]), with how the rows are split across processes and gathered back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.generation import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from .execution.cores import torch_threads


class DecodingSettings(Protocol):
    """The decoding fields of a run's config that generation reads; ``RRHFConfig`` has them all. A protocol, so
    that this module stays below the trainer that uses it."""

    max_prompt_length: int | None
    max_completion_length: int
    repetition_penalty: float
    no_repeat_ngram_size: int
    generation_kwargs: dict[str, Any] | None
    generation_batch_size: int | None
    eval_num_beams: int
    eval_num_return_sequences: int


@dataclass
class Completion:
    """One generated program: its token ids (EOS and padding removed), text, and whether it hit the limit."""

    ids: list[int]
    text: str
    truncated: bool


def tokenize_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_length: int | None, device: torch.device
) -> dict[str, torch.Tensor]:
    """Tokenize and pad prompts for ``generate`` (the tokenizer's padding side decides left or right)."""
    enc = tokenizer(
        list(prompts),
        padding=True,
        truncation=max_length is not None,
        max_length=max_length,
        return_tensors="pt",
    )
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def _strip(
    sequences: torch.Tensor, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int
) -> list[Completion]:
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    out = []
    for row in sequences.tolist():
        ids, ended = [], False
        for tok in row:
            if tok == eos:
                ended = True
                break
            ids.append(tok)
        # Right padding after an early stop is pad tokens; a program never contains the pad token.
        while ids and ids[-1] == pad:
            ids.pop()
            ended = True
        truncated = not ended and len(row) >= max_new_tokens
        out.append(Completion(ids, tokenizer.decode(ids, skip_special_tokens=True), truncated))
    return out


@torch.no_grad()
def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_inputs: dict[str, torch.Tensor],
    generation_config: GenerationConfig,
    num_return_sequences: int,
) -> list[list[Completion]]:
    """Generate ``num_return_sequences`` completions per prompt.

    Args:
        model: A seq2seq or causal LM (unwrapped from DDP).
        tokenizer: Its tokenizer (decoder-only models need left padding, see ``prepare_tokenizer``).
        prompt_inputs: ``input_ids``/``attention_mask`` from :func:`tokenize_prompts`.
        generation_config: Sampling or beam settings; ``max_new_tokens`` bounds the completion.
        num_return_sequences: Completions per prompt.

    Returns:
        One list of :class:`Completion` per prompt.
    """
    if num_return_sequences == 0:
        return [[] for _ in range(prompt_inputs["input_ids"].shape[0])]
    was_training = model.training
    model.eval()
    try:
        warpers = _fast_sampling_warpers(generation_config)
        if warpers is None:
            config = sampling_config(generation_config, num_return_sequences=num_return_sequences)
            sequences = model.generate(**prompt_inputs, generation_config=config)
        else:
            # Each prompt repeated k times, decoded "greedily" over scores where the sampler left one token.
            config = sampling_config(
                generation_config, do_sample=False, temperature=None, top_k=None, top_p=None
            )
            sequences = model.generate(
                **_repeat_inputs(model, prompt_inputs, num_return_sequences),
                generation_config=config,
                logits_processor=warpers,
            )
    finally:
        model.train(was_training)
    if model.config.is_encoder_decoder:
        sequences = sequences[:, 1:]  # the decoder start token
    else:
        sequences = sequences[:, prompt_inputs["input_ids"].shape[1] :]
    flat = _strip(sequences, tokenizer, generation_config.max_new_tokens)
    k = num_return_sequences
    return [flat[i * k : (i + 1) * k] for i in range(len(flat) // k)]


class InverseCDFSampler(LogitsProcessor):
    """Draws each row's next token from ``softmax(scores)`` and leaves only it: the scores come back ``-inf``
    everywhere but there, so greedy selection takes the drawn token.

    One uniform number per row and a search of the cumulative probabilities, an exact draw from the same
    distribution as ``torch.multinomial``, which on CPU draws an exponential variate for every vocabulary entry
    (about 11 ms for 64 rows of 8,192 tokens, against about 1 ms here).
    Draws come from torch's global generator, so a seeded run draws the same tokens again.
    """

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores, dim=-1)
        # Summed in double, so that rounding does not move mass between tokens over a long vocabulary.
        cdf = probs.cumsum(dim=-1, dtype=torch.float64)
        u = torch.rand(scores.shape[0], 1, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
        # The first token whose cumulative probability exceeds u: never one of probability 0.
        token = torch.searchsorted(cdf, u, right=True).clamp_(max=scores.shape[-1] - 1)
        stray = probs.gather(1, token) == 0  # u rounded up to the total: the last possible token instead
        if stray.any():
            last = (probs > 0).cumsum(dim=-1).argmax(dim=-1, keepdim=True)
            token = torch.where(stray, last, token)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token, 0.0)


# Sampling settings that the fast path does not reproduce; a config that sets any of them samples with
# transformers' own sampler.
_OTHER_WARPERS = ("min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "top_h")


def _fast_sampling_warpers(config: GenerationConfig) -> LogitsProcessorList | None:
    """Temperature, top-k and top-p as transformers applies them when sampling, then [`InverseCDFSampler`];
    ``None`` when ``config`` does not sample one token at a time or uses another warper."""
    if not config.do_sample or (config.num_beams or 1) > 1:
        return None
    if any(getattr(config, name, None) not in (None, 1.0) for name in _OTHER_WARPERS):
        return None
    warpers = LogitsProcessorList()
    if config.temperature is not None and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k is not None and config.top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=config.top_k))
    if config.top_p is not None and config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=config.top_p))
    warpers.append(InverseCDFSampler())
    return warpers


def _repeat_inputs(model: PreTrainedModel, prompt_inputs: dict[str, torch.Tensor], k: int) -> dict[str, Any]:
    """``generate``'s inputs with each prompt's row repeated ``k`` times in a row; a seq2seq model's prompts are
    encoded once, before the repeat, as transformers does for ``num_return_sequences``."""
    mask = prompt_inputs["attention_mask"].repeat_interleave(k, dim=0)
    if not model.config.is_encoder_decoder:
        return {"input_ids": prompt_inputs["input_ids"].repeat_interleave(k, dim=0), "attention_mask": mask}
    encoded = model.get_encoder()(**prompt_inputs, return_dict=True)
    encoded.last_hidden_state = encoded.last_hidden_state.repeat_interleave(k, dim=0)
    return {"encoder_outputs": encoded, "attention_mask": mask}


def sampling_config(base: GenerationConfig, **changes) -> GenerationConfig:
    """A copy of ``base`` with ``changes`` applied (generation configs are mutable and shared)."""
    return GenerationConfig.from_dict({**base.to_dict(), **changes})


def base_generation_config(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: DecodingSettings
) -> GenerationConfig:
    """The decoding settings every generation of a run shares: the config's length limit, penalties and
    ``generation_kwargs``, the tokenizer's pad and EOS, and the model's decoder start token.

    ``config`` is an [`RRHFConfig`] (or anything with its ``max_completion_length``, ``repetition_penalty``,
    ``no_repeat_ngram_size`` and ``generation_kwargs``). The model's own ``generation_config`` is not read:
    what decodes a program is the run's config alone.
    """
    return GenerationConfig(
        max_new_tokens=config.max_completion_length,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
        repetition_penalty=config.repetition_penalty,
        no_repeat_ngram_size=config.no_repeat_ngram_size,
        **(config.generation_kwargs or {}),
    )


@torch.no_grad()
def beam_programs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    config: DecodingSettings,
    device: torch.device | None = None,
    progress: bool = False,
) -> tuple[list[list[str]], list[list[bool]]]:
    """The evaluation's decoding: beam search (``eval_num_beams``), ``eval_num_return_sequences`` programs per
    prompt, on [`base_generation_config`]; returns the programs and their truncation flags, per prompt.

    `RRHFTrainer.evaluate` and `perfrl_trl.comparison.evaluate_models` both call it, so one model and one
    config give the same programs in both.

    Args:
        model: A seq2seq or causal LM (unwrapped from DDP).
        tokenizer: Its tokenizer.
        prompts: The prompts.
        config: An [`RRHFConfig`]: lengths, beams, penalties, ``generation_kwargs`` and
            ``generation_batch_size``.
        device: Where to run (default: the model's device).
        progress: Show a progress bar when there is more than one batch.
    """
    device = device or next(model.parameters()).device
    beams = sampling_config(
        base_generation_config(model, tokenizer, config), do_sample=False, num_beams=config.eval_num_beams
    )
    programs: list[list[str]] = []
    truncated: list[list[bool]] = []
    step = config.generation_batch_size or 8
    starts = range(0, len(prompts), step)
    for start in tqdm(starts, desc="beam search", disable=not progress or len(starts) < 2):
        inputs = tokenize_prompts(tokenizer, prompts[start : start + step], config.max_prompt_length, device)
        for group in generate_completions(model, tokenizer, inputs, beams, config.eval_num_return_sequences):
            programs.append([c.text for c in group])
            truncated.append([c.truncated for c in group])
    return programs, truncated


@contextlib.contextmanager
def torch_threads_on_cpu(
    device: torch.device, *, sandbox_alongside: bool, requested: int | None = None
) -> Iterator[None]:
    """On CPU, torch threads set by `perfrl_trl.execution.cores.torch_threads` for the block, then restored."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(torch_threads(sandbox_alongside=sandbox_alongside, requested=requested))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def process_share(n: int) -> list[int]:
    """The rows of ``n`` this process handles: ``rank, rank + world, ...`` (all of them outside
    `torch.distributed`)."""
    if not _distributed():
        return list(range(n))
    return list(range(torch.distributed.get_rank(), n, torch.distributed.get_world_size()))


def gather_in_order(indices: Sequence[int], values: Sequence[Any], n: int) -> list[Any]:
    """Every process's ``values`` (one per row of its ``indices``, see [`process_share`]) in row order
    ``0..n-1``, on every process."""
    shards: list[Any] = [(list(indices), list(values))]
    if _distributed():
        shards = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(shards, (list(indices), list(values)))
    out: list[Any] = [None] * n
    for idx, vals in shards:
        for i, v in zip(idx, vals):
            out[i] = v
    return out
