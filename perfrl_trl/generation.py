"""Candidate generation for seq2seq and decoder-only models (the "generate" step of Figure 1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase


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
        config = sampling_config(generation_config, num_return_sequences=num_return_sequences)
        sequences = model.generate(**prompt_inputs, generation_config=config)
    finally:
        model.train(was_training)
    if model.config.is_encoder_decoder:
        sequences = sequences[:, 1:]  # the decoder start token
    else:
        sequences = sequences[:, prompt_inputs["input_ids"].shape[1] :]
    flat = _strip(sequences, tokenizer, generation_config.max_new_tokens)
    k = num_return_sequences
    return [flat[i * k : (i + 1) * k] for i in range(len(flat) // k)]


def sampling_config(base: GenerationConfig, **changes) -> GenerationConfig:
    """A copy of ``base`` with ``changes`` applied (generation configs are mutable and shared)."""
    return GenerationConfig.from_dict({**base.to_dict(), **changes})
