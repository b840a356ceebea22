"""Denoising pretraining of a code model on a corpus of source files (T5 / CodeT5 span corruption).

The corpus (e.g. [`perfrl_trl.data.corpus.build_corpus`]) is tokenized and packed into windows sized so that
each corrupted window fits the encoder ([`span_corruption_lengths`]), and the model learns to restore the
noise spans; a share of the batches asks for the whole window instead, which is what teaches a rewriting
model to copy (see [`SpanCorruptionCollator`]). The training loop is SFT's ([`train_with_collator`]): a
wall-clock budget, checkpoints as `TrainingArguments` asks, and the loss curve returned. A decoder-only
model learns the same pairs as prompt and completion (see [`SpanCorruptionCollator`]); it is the architecture
that learns to copy on a CPU budget (docs/results.md, "Why the real preset's T5 did not learn to copy").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..data.span_corruption import (
    SpanCorruptionCollator,
    add_sentinels,
    chunk_tokens,
    span_corruption_lengths,
)
from .sft import SFTResult, train_with_collator

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainingArguments

logger = logging.getLogger(__name__)


def corpus_windows(
    corpus: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    input_length: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    text_column: str = "text",
) -> Dataset:
    """The corpus's files as windows of token ids whose corruption fits `input_length` encoder tokens.

    Adds the sentinels to `tokenizer` (in memory) first, so that a literal `<extra_id_0>` in a file stays text.

    Args:
        corpus (`datasets.Dataset`): One source file a row.
        tokenizer (`PreTrainedTokenizerBase`): The model's tokenizer; it gains the sentinels.
        input_length (`int`): The encoder's budget, EOS included.
        noise_density, mean_span_length (`float`): The corruption the windows are sized for.
        text_column (`str`, defaults to `"text"`): The column holding the source.

    Returns:
        `datasets.Dataset` with one column, `input_ids`.
    """
    if text_column not in corpus.column_names:
        raise ValueError(f"the corpus has no column {text_column!r}; it has {corpus.column_names}")
    if len(corpus) == 0:
        raise ValueError("the corpus is empty")
    add_sentinels(tokenizer)
    window, _ = span_corruption_lengths(input_length, noise_density, mean_span_length)
    return chunk_tokens(corpus, tokenizer, window, text_column=text_column)


def denoising_pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    windows: Dataset,
    args: TrainingArguments,
    input_length: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    full_target_fraction: float = 0.5,
    seconds: float | None = None,
    callbacks: list | None = None,
    threads: int | None = None,
    resume_from_checkpoint: str | bool | None = None,
) -> SFTResult:
    """Pretrain a model on span corruption of `windows` (from [`corpus_windows`]).

    The model's embeddings are resized to the tokenizer with its sentinels. Batches are corrupted afresh at
    each call, seeded by `args.seed` (a resumed run restarts the corruption stream: its batches differ from an
    uninterrupted run's, which changes nothing the objective relies on).

    Args:
        model (`PreTrainedModel`): An encoder-decoder or a decoder-only model (e.g.
            [`perfrl_trl.models.build_model`]'s); a decoder-only one's sequences are input and target together.
        tokenizer (`PreTrainedTokenizerBase`): Its tokenizer; it gains the sentinels (save it with the model).
        windows (`datasets.Dataset`): Rows of `input_ids`.
        args (`TrainingArguments`): Optimizer, schedule, batch size, checkpoints; `remove_unused_columns` is
            ignored (the windows hold nothing else).
        input_length (`int`): The encoder's budget the windows were sized for.
        noise_density, mean_span_length (`float`): The corruption (T5's 0.15 and 3).
        full_target_fraction (`float`, defaults to 0.5): Share of batches whose labels are the whole window.
        seconds (`float`, *optional*): Wall-clock budget.
        callbacks, threads, resume_from_checkpoint: As in [`train_with_collator`].

    Returns:
        [`SFTResult`].

    Example:
        ```python
        >>> from datasets import Dataset
        >>> from transformers import TrainingArguments
        >>> from perfrl_trl.models import build_model, load_tokenizer
        >>> tok = load_tokenizer()
        >>> windows = corpus_windows(Dataset.from_dict({"text": ["def f(x):\\n    return x + 1\\n"] * 8}), tok, 32)
        >>> args = TrainingArguments("/tmp/denoise", max_steps=2, report_to="none")
        >>> denoising_pretrain(build_model("t5", "tiny", tok), tok, windows, args, 32).steps
        2
        ```
    """
    if "input_ids" not in windows.column_names or len(windows) == 0:
        raise ValueError(f"windows must be a non-empty dataset with an input_ids column; got {windows}")
    sentinels = add_sentinels(tokenizer)
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    collator = SpanCorruptionCollator(
        tokenizer,
        sentinels,
        max_length=input_length,
        noise_density=noise_density,
        mean_span_length=mean_span_length,
        seed=args.seed,
        full_target_fraction=full_target_fraction,
        is_encoder_decoder=model.config.is_encoder_decoder,
    )
    logger.info("denoising pretraining on %d windows", len(windows))
    return train_with_collator(
        model, tokenizer, windows, collator, args, seconds, callbacks, threads, resume_from_checkpoint
    )
