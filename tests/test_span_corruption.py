"""T5 span corruption: reconstructible, T5's counts, reproducible, and trainable with the bundled tokenizer."""

from __future__ import annotations

import hashlib
import itertools
import random
import sysconfig
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from perfrl_trl.data import (
    SpanCorruptionCollator,
    add_sentinels,
    chunk_tokens,
    noise_counts,
    span_corrupt,
    span_corruption_lengths,
)
from perfrl_trl.models import BUNDLED_TOKENIZER_DIR, create_pretrained, load_tokenizer

SENTINELS = list(range(-1, -1001, -1))  # ids no window can hold, so a mix-up cannot go unnoticed
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def merge(inputs: list[int], targets: list[int], sentinels: list[int]) -> list[int]:
    """Put every target span back in place of its sentinel (written apart from the code under test)."""
    is_sentinel = set(sentinels)
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets:
        if token in is_sentinel:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    out: list[int] = []
    for token in inputs:
        out.extend(spans[token] if token in is_sentinel else [token])
    return out


def test_merging_input_and_target_gives_the_window_back():
    rng = random.Random(1234)
    for _ in range(1000):
        length = rng.choice([0, 1, 2, 3, rng.randrange(4, 40), rng.randrange(40, 600)])
        density, mean = rng.uniform(0.05, 0.6), rng.uniform(1.0, 8.0)
        ids = [rng.randrange(0, 50) for _ in range(length)]  # repeated values, like real code
        inputs, targets = span_corrupt(ids, SENTINELS, random.Random(rng.random()), density, mean)
        assert merge(inputs, targets, SENTINELS) == ids
        n_noise, n_spans = noise_counts(length, density, mean)
        used = [t for t in inputs if t < 0]
        assert used == SENTINELS[:n_spans] == [t for t in targets if t < 0]  # one each, in order
        assert len(targets) - n_spans == n_noise and len(inputs) == length - n_noise + n_spans
        if n_spans:
            # T5's layout: kept span first, noise last, no span empty (no two sentinels side by side)
            assert inputs[0] >= 0 and inputs[-1] == SENTINELS[n_spans - 1]
            assert all(a >= 0 or b >= 0 for a, b in itertools.pairwise(inputs))
            assert all(a >= 0 or b >= 0 for a, b in itertools.pairwise(targets)) and targets[-1] >= 0


def test_noise_share_span_lengths_and_positions():
    length, windows = 1000, 300
    noise_tokens = spans = 0
    span_lengths: set[int] = set()
    position_sum = 0.0
    for seed in range(windows):
        ids = list(range(length))
        _, targets = span_corrupt(ids, SENTINELS, random.Random(seed))
        noisy = [t for t in targets if t >= 0]
        noise_tokens += len(noisy)
        spans += len(targets) - len(noisy)
        position_sum += sum(noisy) / len(noisy)
        run = 0
        for t in [*targets, -1]:
            if t < 0 and run:
                span_lengths.add(run)
            run = 0 if t < 0 else run + 1
    assert noise_tokens / (windows * length) == pytest.approx(0.15, abs=1e-3)
    assert noise_tokens / spans == pytest.approx(3.0, abs=0.01)
    assert {1, 2, 3, 4, 5} <= span_lengths  # random lengths, not fixed spans of 3
    assert position_sum / windows == pytest.approx(length / 2, rel=0.05)  # noise spread over the window


def test_t5_counts_and_window_sizing():
    assert noise_counts(512) == (77, 26)
    assert noise_counts(10, 0.15, 3.0) == (2, 1)  # round(1.5) = 2, halves to even like tf.round
    assert noise_counts(1) == (0, 0) and noise_counts(2, 0.9, 1.0) == (1, 1)
    # the values of T5's compute_input_and_target_lengths (and HF's run_t5_mlm_flax) for 512 tokens
    assert span_corruption_lengths(512) == (568, 114)
    for budget in (8, 64, 100, 512):
        window, target = span_corruption_lengths(budget)
        noise, n_spans = noise_counts(window)
        assert window - noise + n_spans + 1 <= budget and noise + n_spans + 1 == target
        noise, n_spans = noise_counts(window + 1)
        assert window + 1 - noise + n_spans + 1 > budget


def test_same_rng_same_corruption_and_clear_errors():
    ids = list(range(100, 400))
    assert span_corrupt(ids, SENTINELS, random.Random(7)) == span_corrupt(ids, SENTINELS, random.Random(7))
    assert span_corrupt(ids, SENTINELS, random.Random(7)) != span_corrupt(ids, SENTINELS, random.Random(8))
    assert span_corrupt([5], SENTINELS, random.Random(0)) == ([5], [])
    assert span_corrupt([], SENTINELS, random.Random(0)) == ([], [])
    with pytest.raises(ValueError, match="5 noise spans but only 4 sentinels"):
        span_corrupt(list(range(100)), SENTINELS[:4], random.Random(0))
    with pytest.raises(ValueError, match="already contains a sentinel"):
        span_corrupt([*range(50), SENTINELS[3]], SENTINELS, random.Random(0))
    with pytest.raises(ValueError, match="noise_density"):
        span_corrupt(ids, SENTINELS, random.Random(0), noise_density=1.0)
    with pytest.raises(ValueError, match="mean_span_length"):
        span_corrupt(ids, SENTINELS, random.Random(0), mean_span_length=0.5)


@pytest.fixture(scope="module")
def tokenizer():
    tok = load_tokenizer()
    add_sentinels(tok)
    return tok


def test_add_sentinels_in_memory_only(tmp_path):
    on_disk = hashlib.sha256((BUNDLED_TOKENIZER_DIR / "tokenizer.json").read_bytes()).hexdigest()
    tok = load_tokenizer()
    base = len(tok)
    ids = add_sentinels(tok, n=100)
    assert ids == list(range(base, base + 100)) and len(tok) == base + 100
    assert tok.convert_ids_to_tokens(ids[:2]) == ["<extra_id_0>", "<extra_id_1>"]
    assert add_sentinels(tok, n=100) == ids and len(tok) == base + 100  # nothing added twice
    assert add_sentinels(tok, n=102)[:100] == ids and len(tok) == base + 102
    code = tok("x = 1\n", add_special_tokens=False).input_ids
    assert tok.decode([ids[0], *code, ids[1]], skip_special_tokens=True) == "x = 1\n"
    tok.save_pretrained(tmp_path)
    assert add_sentinels(load_tokenizer(tmp_path), n=102) == add_sentinels(tok, n=102)  # saved with it
    assert hashlib.sha256((BUNDLED_TOKENIZER_DIR / "tokenizer.json").read_bytes()).hexdigest() == on_disk
    assert len(load_tokenizer()) == base


def test_chunk_tokens_covers_every_token_and_keeps_markers_as_text(tokenizer):
    texts = [
        (STDLIB / "textwrap.py").read_text(),
        's = "</s> and <extra_id_0> are text here"\n',
        (STDLIB / "colorsys.py").read_text(),
        "π = 3.14159\t# é\n",
        (STDLIB / "bisect.py").read_text(),
    ]
    windows = chunk_tokens(
        Dataset.from_dict({"text": texts, "other": list(range(5))}), tokenizer, 16, batch_size=2
    )
    assert windows.column_names == ["input_ids"]
    rows = windows["input_ids"]
    expected: list[int] = []
    for text in texts:
        expected += tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids
        expected.append(tokenizer.eos_token_id)
    assert [t for row in rows for t in row] == expected
    assert expected.count(tokenizer.eos_token_id) == len(texts)  # the literal "</s>" stayed text
    assert not {0, 1, 3} & set(expected)  # no pad, BOS or UNK either
    sentinel_ids = set(add_sentinels(tokenizer))
    assert not sentinel_ids & set(expected)
    short = [len(row) for row in rows if len(row) != 16]
    assert len(short) <= 3 and all(0 < n < 16 for n in short)  # at most one per batch of 2 files (3 batches)


def test_collator_batches_train_a_real_tiny_t5(tokenizer, tmp_path):
    from transformers import T5ForConditionalGeneration

    sentinels = add_sentinels(tokenizer)
    window, _ = span_corruption_lengths(64)
    texts = [(STDLIB / name).read_text() for name in ("textwrap.py", "colorsys.py")]
    rows = list(chunk_tokens(Dataset.from_dict({"text": texts}), tokenizer, window))[:6]
    collator = SpanCorruptionCollator(tokenizer, sentinels, max_length=64, seed=3)
    batch = collator(rows)
    assert batch["input_ids"].shape[0] == 6 and batch["input_ids"].shape[1] <= 64
    assert torch.equal(batch["attention_mask"].bool(), batch["input_ids"] != tokenizer.pad_token_id)
    for i, row in enumerate(rows):
        inputs = batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
        labels = [t for t in batch["labels"][i].tolist() if t != -100]
        assert inputs[-1] == labels[-1] == tokenizer.eos_token_id
        assert merge(inputs[:-1], labels[:-1], sentinels) == row["input_ids"]

    again = SpanCorruptionCollator(tokenizer, sentinels, max_length=64, seed=3)
    first = again(rows)
    assert all(torch.equal(batch[k], first[k]) for k in batch)  # same seed, same first batch
    assert not torch.equal(collator(rows)["labels"], batch["labels"])  # the next call corrupts afresh
    assert collator.calls == 2

    model = T5ForConditionalGeneration.from_pretrained(create_pretrained("t5", "tiny", tmp_path / "t5"))
    model.resize_token_embeddings(len(tokenizer))
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    with pytest.raises(ValueError, match=f"windows of at most {window} tokens"):
        SpanCorruptionCollator(tokenizer, sentinels, max_length=64)(
            [{"input_ids": list(range(10, 10 + window + 4))}]
        )


def test_full_target_batches_write_the_whole_window(tokenizer):
    sentinels = add_sentinels(tokenizer)
    window, _ = span_corruption_lengths(64)
    rows = [{"input_ids": list(range(100 + k, 100 + k + window))} for k in range(4)]

    always = SpanCorruptionCollator(tokenizer, sentinels, max_length=64, seed=5, full_target_fraction=1.0)
    batch = always(rows)
    for i, row in enumerate(rows):
        labels = [t for t in batch["labels"][i].tolist() if t != -100]
        assert labels == [*row["input_ids"], tokenizer.eos_token_id]  # the whole window, then EOS
        inputs = batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
        assert set(sentinels) & set(inputs)  # the encoder still sees the corrupted copy
        assert len(inputs) < window

    # Fraction 0 is T5's objective draw for draw; a fraction in between mixes whole batches of each kind.
    plain = SpanCorruptionCollator(tokenizer, sentinels, max_length=64, seed=5)
    zero = SpanCorruptionCollator(tokenizer, sentinels, max_length=64, seed=5, full_target_fraction=0.0)
    assert all(torch.equal(plain(rows)[k], zero(rows)[k]) for k in ("input_ids", "labels"))
    half = SpanCorruptionCollator(tokenizer, sentinels, max_length=64, seed=5, full_target_fraction=0.5)
    kinds = []
    for _ in range(40):
        lengths = {int(n) for n in (half(rows)["labels"] != -100).sum(dim=1)}
        full = lengths == {window + 1}
        assert full or max(lengths) < window // 2  # one kind per batch, never mixed
        kinds.append(full)
    assert 5 < sum(kinds) < 35

    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="full_target_fraction"):
            SpanCorruptionCollator(tokenizer, sentinels, max_length=64, full_target_fraction=bad)


@pytest.mark.parametrize("full", [0.0, 1.0])
def test_decoder_only_layout_is_the_seq2seq_pair_as_prompt_and_completion(tokenizer, full):
    sentinels = add_sentinels(tokenizer)
    window, _ = span_corruption_lengths(64)
    rows = [{"input_ids": list(range(100 + k, 100 + k + window - 3 * k))} for k in range(3)]
    kw = dict(max_length=64, seed=7, full_target_fraction=full)
    seq2seq = SpanCorruptionCollator(tokenizer, sentinels, **kw)(rows)
    causal = SpanCorruptionCollator(tokenizer, sentinels, is_encoder_decoder=False, **kw)(rows)
    assert set(causal) == {"input_ids", "attention_mask", "labels"}
    assert causal["input_ids"].shape == causal["labels"].shape == causal["attention_mask"].shape
    for i in range(len(rows)):
        source = seq2seq["input_ids"][i][seq2seq["attention_mask"][i].bool()].tolist()
        target = [t for t in seq2seq["labels"][i].tolist() if t != -100]
        real = causal["attention_mask"][i].bool()
        assert causal["input_ids"][i][real].tolist() == source + target  # the same pair, in one sequence
        assert causal["labels"][i][real].tolist() == [-100] * len(source) + target  # loss on the target only
        assert (causal["labels"][i][~real] == -100).all() and not real[: real.sum()].logical_not().any()
