"""Collator that pads every candidate of a batch of prompts into one tensor for a single forward pass."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .loss import SourceKind

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["GREEDY", "RANDOM", "TARGET", "RRHFCandidateCollator", "SourceKind"]

RANDOM = int(SourceKind.RANDOM)
GREEDY = int(SourceKind.GREEDY)
TARGET = int(SourceKind.TARGET)


def _speedup(value: float | None) -> float:
    """A measured speed-up, or NaN when there is none (the loss never compares a NaN)."""
    if value is None:
        return math.nan
    value = float(value)
    if not value > 0 and not math.isnan(value):
        raise ValueError(f"a speed-up must be positive, got {value!r}")
    return value


def _round_up(length: int, multiple: int | None) -> int:
    if not multiple:
        return length
    return -(-length // multiple) * multiple


@dataclass
class RRHFCandidateCollator:
    """Data collator for RRHF: one row per (prompt, candidate) pair, all candidates of the batch padded together.

    Each example is one prompt with its candidates, either as a list of dicts

        {"prompt_ids": [...], "candidates": [{"completion_ids": [...], "reward": 1.3, "source": "random"}, ...]}

    or in columns (convenient for `datasets`)

        {"prompt_ids": [...], "completion_ids": [[...], ...], "rewards": [...], "sources": [...]}

    ``source`` is ``"random"``, ``"greedy"``, ``"target"``, ``"rewrite"`` or a [`SourceKind`] code; an optional
    ``truncated`` flag (or ``truncated`` column) marks completions cut by the generation limit, and an optional
    ``speedup`` (or ``speedups`` column; ``None`` when not measured) feeds speed-aware ranking. ``prompt_ids`` are
    used as given (add the tokenizer's special tokens beforehand); ``completion_ids`` must not contain the decoder
    start token.

    Completions are cut after their first EOS. An EOS is appended to a completion that has none unless it is
    marked ``truncated`` or is cut by ``max_completion_length``: a program stopped by the token limit did not end
    there, and teaching (or, in the ranking loss, penalising) an EOS at that point would push the model towards
    never stopping.

    Layouts (``N`` = total number of candidates in the batch):

    * ``is_encoder_decoder=True`` (T5): ``input_ids``/``attention_mask`` ``[N, P]`` hold the prompt once per
      candidate (right padding); ``labels`` ``[N, C]`` hold the completion padded with ``label_pad_token_id``. The
      model builds ``decoder_input_ids`` by shifting ``labels``.
    * decoder-only: ``input_ids``/``attention_mask``/``labels`` ``[N, L]`` hold ``prompt + completion`` with
      ``labels`` masked on prompt and padding and *not* shifted (use `perfrl_trl.loss.shift_labels`). With
      ``padding_side="left"`` a ``position_ids`` tensor is returned too, since models do not infer positions from
      the mask outside ``generate``.

    Always returned: ``rewards`` (float32 ``[N]``), ``sources`` (long ``[N]``, [`SourceKind`] codes),
    ``speedups`` (float64 ``[N]``, ``NaN`` where not given) and ``group_ids`` (long ``[N]``, the example's index in
    the batch). Pop these before calling the model.

    Args:
        pad_token_id: Token used to pad ``input_ids``.
        eos_token_id: Token appended to finished completions; ``None`` appends nothing.
        is_encoder_decoder: Seq2seq layout (see above) instead of decoder-only.
        max_prompt_length: Longest prompt kept; longer ones are cut on ``prompt_truncation_side``.
        max_completion_length: Longest completion kept (EOS included).
        padding_side: ``"right"`` or ``"left"``, decoder-only layout only.
        prompt_truncation_side: ``"left"`` keeps the end of long prompts, ``"right"`` the start.
        add_eos: Append ``eos_token_id`` to finished completions.
        pad_to_multiple_of: Round padded lengths up to a multiple of this.
        return_position_ids: Return ``position_ids``; defaults to ``padding_side == "left"`` (decoder-only).
        label_pad_token_id: Label of prompt and padding positions.

    Example:
    ```python
    >>> from perfrl_trl.collator import RRHFCandidateCollator
    >>> collator = RRHFCandidateCollator(pad_token_id=0, eos_token_id=1)
    >>> examples = [
    ...     {"prompt_ids": [5, 6], "candidates": [
    ...         {"completion_ids": [7], "reward": 2.0, "source": "random"},
    ...         {"completion_ids": [8, 9], "reward": 0.0, "source": "target"}]},
    ...     {"prompt_ids": [4], "candidates": [{"completion_ids": [3], "reward": 1.0, "source": "greedy"}]},
    ... ]
    >>> batch = collator(examples)
    >>> batch["input_ids"]
    tensor([[5, 6, 7, 1, 0],
            [5, 6, 8, 9, 1],
            [4, 3, 1, 0, 0]])
    >>> batch["labels"]
    tensor([[-100, -100,    7,    1, -100],
            [-100, -100,    8,    9,    1],
            [-100,    3,    1, -100, -100]])
    >>> batch["rewards"], batch["sources"], batch["group_ids"]
    (tensor([2., 0., 1.]), tensor([0, 2, 1]), tensor([0, 0, 1]))

    ```
    """

    pad_token_id: int
    eos_token_id: int | None = None
    is_encoder_decoder: bool = False
    max_prompt_length: int | None = None
    max_completion_length: int | None = None
    padding_side: str = "right"
    prompt_truncation_side: str = "left"
    add_eos: bool = True
    pad_to_multiple_of: int | None = None
    return_position_ids: bool | None = None
    label_pad_token_id: int = -100

    def __post_init__(self):
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        if self.prompt_truncation_side not in ("left", "right"):
            raise ValueError(
                f"prompt_truncation_side must be 'left' or 'right', got {self.prompt_truncation_side!r}"
            )
        for name in ("max_prompt_length", "max_completion_length", "pad_to_multiple_of"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.return_position_ids is None:
            self.return_position_ids = not self.is_encoder_decoder and self.padding_side == "left"

    @classmethod
    def from_tokenizer(
        cls, tokenizer: PreTrainedTokenizerBase, is_encoder_decoder: bool = False, **kwargs: Any
    ) -> RRHFCandidateCollator:
        """Takes ``pad_token_id`` and ``eos_token_id`` from ``tokenizer`` (pad falls back to EOS)."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError(
                "The tokenizer has neither a pad nor an EOS token; pass pad_token_id explicitly."
            )
        kwargs.setdefault("padding_side", getattr(tokenizer, "padding_side", "right"))
        return cls(
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            is_encoder_decoder=is_encoder_decoder,
            **kwargs,
        )

    # ------------------------------------------------------------------ helpers

    def _prompt(self, ids: Sequence[int]) -> list[int]:
        ids = list(ids)
        limit = self.max_prompt_length
        if limit is not None and len(ids) > limit:
            ids = ids[-limit:] if self.prompt_truncation_side == "left" else ids[:limit]
        return ids

    def _completion(self, ids: Sequence[int], truncated: bool) -> list[int]:
        ids = list(ids)
        eos = self.eos_token_id
        if eos is not None and eos in ids:
            ids = ids[: ids.index(eos) + 1]  # generate() pads after EOS
        elif self.add_eos and eos is not None and not truncated:
            ids.append(eos)
        if self.max_completion_length is not None:
            ids = ids[: self.max_completion_length]
        return ids

    @staticmethod
    def _candidates(example: dict[str, Any]) -> list[tuple[Sequence[int], float, int, bool, float]]:
        if "candidates" in example:
            return [
                (
                    c["completion_ids"],
                    float(c["reward"]),
                    int(SourceKind.parse(c.get("source", SourceKind.RANDOM))),
                    bool(c.get("truncated", False)),
                    _speedup(c.get("speedup")),
                )
                for c in example["candidates"]
            ]
        completions = example["completion_ids"]
        n = len(completions)
        sources = example.get("sources") or [SourceKind.RANDOM] * n
        truncated = example.get("truncated") or [False] * n
        speedups = example.get("speedups") or [None] * n
        rewards = example["rewards"]
        if not len(rewards) == len(sources) == len(truncated) == len(speedups) == n:
            raise ValueError(
                "completion_ids, rewards, sources, truncated and speedups must have the same length."
            )
        return [
            (ids, float(r), int(SourceKind.parse(s)), bool(t), _speedup(sp))
            for ids, r, s, t, sp in zip(completions, rewards, sources, truncated, speedups)
        ]

    def _pad(self, rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
        width = _round_up(max(len(r) for r in rows), self.pad_to_multiple_of)
        padded = [[value] * (width - len(r)) + r if left else r + [value] * (width - len(r)) for r in rows]
        return torch.tensor(padded, dtype=torch.long)

    # ------------------------------------------------------------------ main

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompts, completions, rewards, sources, speedups, group_ids = [], [], [], [], [], []
        for index, example in enumerate(examples):
            prompt = self._prompt(example["prompt_ids"])
            candidates = self._candidates(example)
            if not candidates:
                raise ValueError(f"Example {index} has no candidates.")
            for ids, reward, source, truncated, speedup in candidates:
                prompts.append(prompt)
                completions.append(self._completion(ids, truncated))
                rewards.append(reward)
                sources.append(source)
                speedups.append(speedup)
                group_ids.append(index)

        if self.is_encoder_decoder:
            input_ids = self._pad(prompts, self.pad_token_id)
            attention_mask = self._pad([[1] * len(p) for p in prompts], 0)
            labels = self._pad(completions, self.label_pad_token_id)
            batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        else:
            left = self.padding_side == "left"
            input_ids = self._pad([p + c for p, c in zip(prompts, completions)], self.pad_token_id, left)
            attention_mask = self._pad(
                [[1] * (len(p) + len(c)) for p, c in zip(prompts, completions)], 0, left
            )
            masked = [[self.label_pad_token_id] * len(p) + c for p, c in zip(prompts, completions)]
            labels = self._pad(masked, self.label_pad_token_id, left)
            batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if self.return_position_ids and not self.is_encoder_decoder:
            batch["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)

        batch["rewards"] = torch.tensor(rewards, dtype=torch.float32)
        batch["sources"] = torch.tensor(sources, dtype=torch.long)
        batch["speedups"] = torch.tensor(speedups, dtype=torch.float64)
        batch["group_ids"] = torch.tensor(group_ids, dtype=torch.long)
        return batch


@dataclass
class SFTCollator:
    """Cross-entropy batches of ``prompt -> target_code`` rows, with the exact layout RRHF training uses.

    It tokenizes the raw dataset rows and lays them out through :class:`RRHFCandidateCollator` with the
    target as the only candidate, then drops the RRHF fields, so the model's own ``labels`` loss is plain
    supervised fine-tuning on the same tokens.

    Args:
        tokenizer: The model's tokenizer (prepared with ``perfrl_trl.models.prepare_tokenizer``).
        is_encoder_decoder: Seq2seq layout (T5) instead of decoder-only.
        max_prompt_length: Longest prompt kept.
        max_completion_length: Longest target kept (EOS included).
        prompt_column: Column with the prompt text.
        target_column: Column with the target program.
        prompt_truncation_side: ``"right"`` (default) keeps the start of a long prompt, as generation does
            (the tokenizer truncates on the right), so the model is trained on the prompts it will be given.
    """

    tokenizer: PreTrainedTokenizerBase
    is_encoder_decoder: bool
    max_prompt_length: int | None = None
    max_completion_length: int | None = None
    prompt_column: str = "prompt"
    target_column: str = "target_code"
    prompt_truncation_side: str = "right"

    def __post_init__(self):
        self._inner = RRHFCandidateCollator.from_tokenizer(
            self.tokenizer,
            is_encoder_decoder=self.is_encoder_decoder,
            max_prompt_length=self.max_prompt_length,
            max_completion_length=self.max_completion_length,
            prompt_truncation_side=self.prompt_truncation_side,
        )

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        examples = []
        for i, row in enumerate(rows):
            for column in (self.prompt_column, self.target_column):
                if column not in row:
                    raise ValueError(f"row {i}: missing column {column!r}; the row has {sorted(row)}")
                if not isinstance(row.get(column), str):
                    raise ValueError(
                        f"row {i}: column {column!r} must be a string, got {row.get(column)!r:.60}"
                    )
            if self.prompt_truncation_side == "right":
                # The tokenizer's own truncation, exactly as generation tokenizes prompts (the closing
                # special token is kept), so training and generation see the same prompt ids.
                prompt_ids = self.tokenizer(
                    row[self.prompt_column],
                    truncation=self.max_prompt_length is not None,
                    max_length=self.max_prompt_length,
                )["input_ids"]
            else:
                prompt_ids = self.tokenizer(row[self.prompt_column])["input_ids"]
            target_ids = self.tokenizer(row[self.target_column], add_special_tokens=False)["input_ids"]
            examples.append(
                {"prompt_ids": prompt_ids, "candidates": [{"completion_ids": target_ids, "reward": 0.0}]}
            )
        batch = self._inner(examples)
        for key in ("rewards", "sources", "speedups", "group_ids"):
            batch.pop(key)
        return batch
