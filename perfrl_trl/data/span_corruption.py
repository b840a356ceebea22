"""T5 / CodeT5 span corruption: the denoising objective a code model is pretrained with.

A window of token ids is split into alternating kept and noise spans (T5's `random_spans_noise_mask`): about
`noise_density` of the tokens are noise, in spans of `mean_span_length` tokens on average. The encoder sees
the window with each noise span replaced by one sentinel (`<extra_id_0>`, `<extra_id_1>`, ... in order) and
the decoder learns to write, for each span, its sentinel followed by the span's tokens:

    window:  def  f ( x ) :  return  x  +  1
    input:   def  f <extra_id_0> :  return  x <extra_id_1>
    target:  <extra_id_0> ( x ) <extra_id_1> +  1

The pieces, used in this order: [`add_sentinels`] (the tokenizer gains the sentinel tokens, the model is
resized to `len(tokenizer)`), [`chunk_tokens`] (a corpus of files becomes windows of token ids),
[`SpanCorruptionCollator`] (windows become seq2seq batches, each corrupted afresh) and
[`span_corruption_lengths`] (the window length whose corrupted input fits the encoder).

A decoder-only model gets the same pairs, laid out as a prompt and its completion (`input + target`, with the
loss on the target only), exactly as SFT lays out `prompt -> program` for it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

SENTINEL_FORMAT = "<extra_id_{}>"  # T5's and CodeT5's naming


def _check_settings(noise_density: float, mean_span_length: float) -> None:
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"noise_density must be in (0, 1), got {noise_density}")
    if mean_span_length < 1.0:
        raise ValueError(f"mean_span_length must be at least 1, got {mean_span_length}")


def noise_counts(length: int, noise_density: float = 0.15, mean_span_length: float = 3.0) -> tuple[int, int]:
    """How many tokens of a window of `length` are noise, and in how many spans, as T5 computes them.

    `round(length * noise_density)` noise tokens, kept between 1 and `length - 1` so that both kinds of span
    exist, and `round(noise / mean_span_length)` spans, at least one and at most as many as there are noise
    tokens and kept tokens (each span of either kind holds one token or more). Python's `round`, like
    `tf.round`, rounds halves to even. A window of fewer than 2 tokens has no noise.

    Args:
        length (`int`): Tokens in the window.
        noise_density (`float`, defaults to 0.15): Share of noise tokens.
        mean_span_length (`float`, defaults to 3.0): Mean length of a noise span.

    Returns:
        `tuple[int, int]`: `(noise_tokens, noise_spans)`.

    Example:
        ```python
        >>> noise_counts(512)
        (77, 26)
        ```
    """
    _check_settings(noise_density, mean_span_length)
    if length < 2:
        return 0, 0
    noise = min(max(round(length * noise_density), 1), length - 1)
    spans = min(max(round(noise / mean_span_length), 1), noise, length - noise)
    return noise, spans


def _segment(rng: random.Random, n_items: int, n_segments: int) -> list[int]:
    """Lengths of a uniformly random split of `n_items` into `n_segments` non-empty segments.

    T5 shuffles `n_segments - 1` "segment starts here" marks among the `n_items - 1` gaps; choosing the gaps
    with `rng.sample` is the same distribution without building the list."""
    cuts = sorted(rng.sample(range(1, n_items), n_segments - 1))
    bounds = [0, *cuts, n_items]
    return [b - a for a, b in itertools.pairwise(bounds)]


def span_corrupt(
    ids: Sequence[int],
    sentinel_ids: Sequence[int],
    rng: random.Random,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
) -> tuple[list[int], list[int]]:
    """Corrupt one window of token ids with T5's span corruption.

    The window is split into `2 * spans` alternating spans, kept first and noise last (T5's
    `random_spans_noise_mask` without `random_roll`): the noise and the kept tokens are each cut into `spans`
    non-empty pieces at uniformly random places. The input keeps the kept spans and puts `sentinel_ids[i]` in
    place of the `i`-th noise span; the target is, for each noise span, its sentinel then its tokens. No EOS
    is added (the collator adds it).

    Args:
        ids (`Sequence[int]`): The window; it must not contain a sentinel id, or the target could not be told
            apart from the text.
        sentinel_ids (`Sequence[int]`): The sentinels in the order they are used (`<extra_id_0>` first).
        rng (`random.Random`): The only source of randomness: the same state gives the same corruption.
        noise_density (`float`, defaults to 0.15): Share of noise tokens (see [`noise_counts`]).
        mean_span_length (`float`, defaults to 3.0): Mean length of a noise span.

    Returns:
        `tuple[list[int], list[int]]`: `(input_ids, target_ids)`; for a window of fewer than 2 tokens, the
        window itself and an empty target.

    Raises:
        `ValueError`: fewer sentinels than noise spans, a sentinel inside `ids`, or bad settings.

    Example:
        ```python
        >>> import random
        >>> span_corrupt(list(range(10, 30)), [-1, -2, -3], random.Random(0))
        ([10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, -1], [-1, 27, 28, 29])
        ```
    """
    n_noise, n_spans = noise_counts(len(ids), noise_density, mean_span_length)
    if n_spans > len(sentinel_ids):
        raise ValueError(
            f"a window of {len(ids)} tokens has {n_spans} noise spans but only {len(sentinel_ids)} sentinels "
            "were given; add more with add_sentinels(tokenizer, n) or use shorter windows"
        )
    if n_spans and not set(sentinel_ids).isdisjoint(ids):
        raise ValueError(
            "the window already contains a sentinel id; tokenize text with split_special_tokens=True "
            "(as chunk_tokens does) so that a literal '<extra_id_0>' stays text"
        )
    if n_spans == 0:
        return list(ids), []
    # T5 draws the noise lengths, then the kept lengths; interleaved as kept, noise, kept, noise, ...
    noise_lengths = _segment(rng, n_noise, n_spans)
    kept_lengths = _segment(rng, len(ids) - n_noise, n_spans)
    inputs: list[int] = []
    targets: list[int] = []
    start = 0
    for sentinel, kept, noise in zip(sentinel_ids, kept_lengths, noise_lengths):
        inputs.extend(ids[start : start + kept])
        inputs.append(sentinel)
        start += kept
        targets.append(sentinel)
        targets.extend(ids[start : start + noise])
        start += noise
    return inputs, targets


def span_corruption_lengths(
    input_length: int, noise_density: float = 0.15, mean_span_length: float = 3.0
) -> tuple[int, int]:
    """The longest window whose corrupted input, EOS included, has at most `input_length` tokens.

    The counterpart of T5's `compute_input_and_target_lengths`: pass the returned window length to
    [`chunk_tokens`] and `input_length` as the collator's `max_length`, and no encoder token is wasted.

    Args:
        input_length (`int`): The encoder's length budget (at least 2).
        noise_density (`float`, defaults to 0.15): As in [`span_corrupt`].
        mean_span_length (`float`, defaults to 3.0): As in [`span_corrupt`].

    Returns:
        `tuple[int, int]`: `(window_length, target_length)`, the target's length including EOS.

    Example:
        ```python
        >>> span_corruption_lengths(512)
        (568, 114)
        ```
    """
    if input_length < 2:
        raise ValueError(f"input_length must be at least 2 (a token and EOS), got {input_length}")

    def corrupted(length: int) -> int:
        noise, spans = noise_counts(length, noise_density, mean_span_length)
        return length - noise + spans + 1

    # The corrupted length grows with the window but not strictly (rounding), so walk up to the first window
    # that no longer fits; it is within input_length / (1 - noise_density) + a few tokens.
    window = input_length - 1
    while corrupted(window + 1) <= input_length:
        window += 1
    noise, spans = noise_counts(window, noise_density, mean_span_length)
    return window, noise + spans + 1


def add_sentinels(tokenizer: PreTrainedTokenizerBase, n: int = 100) -> list[int]:
    """Add the sentinels `<extra_id_0>` ... `<extra_id_{n-1}>` to `tokenizer` and return their ids, in order.

    The tokenizer object is changed in memory only: the files it was loaded from (the bundled tokenizer
    included) are never written. Save it with the checkpoint it belongs to (`tokenizer.save_pretrained`), and
    resize the model with `model.resize_token_embeddings(len(tokenizer))`. The sentinels are special tokens
    (`decode(..., skip_special_tokens=True)` drops them) and not normalized. Sentinels the tokenizer already
    has keep their ids (calling it again, or on a saved tokenizer, adds nothing).

    Args:
        tokenizer (`PreTrainedTokenizerBase`): A fast or slow Hugging Face tokenizer, modified in place.
        n (`int`, defaults to 100): Number of sentinels, T5's and CodeT5's default. A window needs one per
            noise span (see [`noise_counts`]).

    Returns:
        `list[int]`: the id of `<extra_id_0>`, then of `<extra_id_1>`, ...

    Example:
        ```python
        >>> from perfrl_trl.models import load_tokenizer
        >>> tok = load_tokenizer()
        >>> ids = add_sentinels(tok)
        >>> ids[:2], len(tok)
        ([8192, 8193], 8292)
        ```
    """
    from tokenizers import AddedToken

    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    names = [SENTINEL_FORMAT.format(i) for i in range(n)]
    vocab = tokenizer.get_vocab()
    missing = [name for name in names if name not in vocab]
    # add_tokens(special_tokens=True) rather than add_special_tokens({"additional_special_tokens": ...}):
    # the latter replaces the tokenizer's list of extra special tokens, and its keyword to keep them was
    # renamed in transformers 5; AddedToken(special=True) behaves the same in every version.
    tokenizer.add_tokens(
        [AddedToken(name, special=True, normalized=False, lstrip=False, rstrip=False) for name in missing],
        special_tokens=True,
    )
    ids = tokenizer.convert_tokens_to_ids(names)
    if len(set(ids)) != n or tokenizer.unk_token_id in ids:
        raise RuntimeError(f"{type(tokenizer).__name__} did not give the {n} sentinels distinct ids")
    return ids


def chunk_tokens(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    length: int,
    text_column: str = "text",
    batch_size: int = 1000,
    num_proc: int | None = None,
) -> Dataset:
    """Tokenize the files of `dataset` and pack their tokens into windows of `length` ids.

    Each file is tokenized without special tokens and with `split_special_tokens=True`, so that a literal
    `"</s>"` or `"<extra_id_0>"` in a source file is text, then followed by EOS (the only EOS in the stream,
    marking where a file ends). The stream is cut into windows of `length`; packing is done per `map` batch
    of `batch_size` files, so each batch's last window may be shorter (none is dropped: the windows cover
    every token, in the dataset's order).

    Args:
        dataset (`datasets.Dataset`): Rows with a text column, e.g. [`build_corpus`]'s.
        tokenizer (`PreTrainedTokenizerBase`): The tokenizer (with its sentinels, see [`add_sentinels`]).
        length (`int`): Tokens per window, e.g. the first value of [`span_corruption_lengths`].
        text_column (`str`, defaults to `"text"`): The column holding the text.
        batch_size (`int`, defaults to 1000): Files packed together (at most one short window each).
        num_proc (`int`, *optional*): Processes for `datasets.map`; the order is kept.

    Returns:
        `datasets.Dataset`: one column, `input_ids` (lists of `int32`).

    Example:
        ```python
        >>> from datasets import Dataset
        >>> from perfrl_trl.models import load_tokenizer
        >>> tok = load_tokenizer()
        >>> windows = chunk_tokens(Dataset.from_dict({"text": ["x = 1\\n"] * 10}), tok, 8)
        >>> [len(w) for w in windows["input_ids"]]  # 10 files of 4 tokens and EOS
        [8, 8, 8, 8, 8, 8, 2]
        ```
    """
    from datasets import Features, Value
    from datasets import Sequence as ListOf

    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"{type(tokenizer).__name__} has no EOS token to separate files")

    def pack(batch: dict[str, list]) -> dict[str, list]:
        # verbose=False: files longer than model_max_length are expected here (they are cut into windows)
        encoded = tokenizer(
            batch[text_column],
            add_special_tokens=False,
            split_special_tokens=True,
            return_attention_mask=False,
            verbose=False,
        )["input_ids"]
        stream: list[int] = []
        for ids in encoded:
            stream.extend(ids)
            stream.append(eos)
        return {"input_ids": [stream[i : i + length] for i in range(0, len(stream), length)]}

    return dataset.map(
        pack,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        features=Features({"input_ids": ListOf(Value("int32"))}),
        desc="packing token windows",
    )


class SpanCorruptionCollator:
    """Turn windows of token ids into span-corruption batches, corrupting each window afresh.

    Each row's `input_ids` (a window from [`chunk_tokens`]) is corrupted by [`span_corrupt`]; EOS ends both
    the encoder input and the labels, as in T5 and CodeT5. Inputs and labels are right-padded to the batch's
    longest; padded label positions are -100, which the model's loss ignores (T5 builds its decoder inputs
    from the labels). Other columns of the rows are ignored. With `is_encoder_decoder=False` each row is one
    sequence, `input + EOS + target + EOS`, whose labels are -100 on the input (the layout SFT gives a
    decoder-only model's prompt and program; the model shifts the labels itself).

    With `full_target_fraction` > 0, that share of the batches (drawn per batch, so that a batch's labels share
    one length and padding stays small) get the whole window as their labels instead of the spans: the decoder
    then writes the program out in full from its corrupted copy, as BART's text infilling does. Span targets
    alone teach syntax but never make the decoder reproduce a whole file; a code-rewriting model's outputs are
    mostly copies of its input, and the full targets are what teach it to copy.

    Randomness is reproducible: the `k`-th call (batch) of a collator uses
    `random.Random(f"{seed}:{worker}:{k}")`, `worker` being the `torch.utils.data` worker id (0 in the main
    process), and its rows draw from it in order. The same seed, data order and number of dataloader workers
    therefore give the same batches, while a window seen in another epoch (another call) gets another
    corruption. String seeds are hashed with SHA-512 by `random`, so `PYTHONHASHSEED` does not matter. The
    count is `collator.calls`; set it to resume a run at a given batch.

    Args:
        tokenizer (`PreTrainedTokenizerBase`): Gives `pad_token_id` and `eos_token_id`.
        sentinel_ids (`Sequence[int]`): From [`add_sentinels`].
        max_length (`int`): The longest encoder input, EOS included; a window whose corrupted input is longer
            raises a `ValueError` (use [`span_corruption_lengths`] to size the windows). Labels are not cut.
        noise_density (`float`, defaults to 0.15): As in [`span_corrupt`].
        mean_span_length (`float`, defaults to 3.0): As in [`span_corrupt`].
        seed (`int`, defaults to 0): Base seed of the corruption.
        full_target_fraction (`float`, defaults to 0.0): Share of batches whose labels are the whole window
            (then EOS) rather than the sentinel-marked spans; 0 is T5's objective.
        is_encoder_decoder (`bool`, defaults to True): The seq2seq layout; False lays each pair out as one
            decoder-only sequence.

    Example:
        ```python
        >>> from perfrl_trl.models import load_tokenizer
        >>> tok = load_tokenizer()
        >>> collator = SpanCorruptionCollator(tok, add_sentinels(tok), max_length=512)
        >>> batch = collator([{"input_ids": list(range(100, 140))}, {"input_ids": list(range(100, 120))}])
        >>> sorted(batch), batch["input_ids"].shape[0]
        (['attention_mask', 'input_ids', 'labels'], 2)
        ```
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        sentinel_ids: Sequence[int],
        max_length: int,
        noise_density: float = 0.15,
        mean_span_length: float = 3.0,
        seed: int = 0,
        full_target_fraction: float = 0.0,
        is_encoder_decoder: bool = True,
    ):
        _check_settings(noise_density, mean_span_length)
        if not 0.0 <= full_target_fraction <= 1.0:
            raise ValueError(f"full_target_fraction must be in [0, 1], got {full_target_fraction}")
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs a pad and an EOS token")
        self.pad_token_id = tokenizer.pad_token_id
        self.eos_token_id = tokenizer.eos_token_id
        self.sentinel_ids = list(sentinel_ids)
        self.max_length = max_length
        self.noise_density = noise_density
        self.mean_span_length = mean_span_length
        self.seed = seed
        self.full_target_fraction = full_target_fraction
        self.is_encoder_decoder = is_encoder_decoder
        self.calls = 0

    def rng_for_call(self, call: int) -> random.Random:
        """The random generator of batch number `call` in this process (see the class docstring)."""
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        return random.Random(f"{self.seed}:{worker}:{call}")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rng = self.rng_for_call(self.calls)
        self.calls += 1
        # Drawn only when asked for: with a fraction of 0 the batches are exactly T5's, draw for draw.
        full = self.full_target_fraction > 0 and rng.random() < self.full_target_fraction
        inputs, labels = [], []
        for row in features:
            ids = list(row["input_ids"])
            source, target = span_corrupt(
                ids, self.sentinel_ids, rng, self.noise_density, self.mean_span_length
            )
            source.append(self.eos_token_id)
            target.append(self.eos_token_id)
            if len(source) > self.max_length:
                window, _ = span_corruption_lengths(
                    self.max_length, self.noise_density, self.mean_span_length
                )
                raise ValueError(
                    f"a window of {len(ids)} tokens corrupts to {len(source)} input tokens, more than "
                    f"max_length={self.max_length}; chunk the corpus into windows of at most {window} tokens"
                )
            inputs.append(source)
            labels.append([*ids, self.eos_token_id] if full else target)
        if not self.is_encoder_decoder:
            sequences = [x + y for x, y in zip(inputs, labels)]
            labels = [[-100] * len(x) + y for x, y in zip(inputs, labels)]
            inputs = sequences
        width = max(len(x) for x in inputs)
        label_width = max(len(x) for x in labels)
        return {
            "input_ids": torch.tensor([x + [self.pad_token_id] * (width - len(x)) for x in inputs]),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in inputs]),
            "labels": torch.tensor([x + [-100] * (label_width - len(x)) for x in labels]),
        }
