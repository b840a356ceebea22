"""Layout of `RRHFCandidateCollator` batches, and a forward pass proving the padding is right."""

import doctest

import pytest
import torch
from torch.testing import assert_close

import perfrl_trl.collator as collator_module
from perfrl_trl.collator import GREEDY, RANDOM, TARGET, RRHFCandidateCollator, SFTCollator, SourceKind
from perfrl_trl.loss import RRHFLossOptions, rrhf_loss, sequence_scores, shift_labels

PAD, EOS = 0, 1


def make_tokenizer():
    from perfrl_trl.models import load_tokenizer

    return load_tokenizer()


def example(prompt, *candidates):
    return {
        "prompt_ids": prompt,
        "candidates": [
            {"completion_ids": c, "reward": r, "source": s, **({"speedup": sp[0]} if sp else {})}
            for c, r, s, *sp in candidates
        ],
    }


EXAMPLES = [
    example([5, 6, 7], ([8], 2.0, "random", 2.5), ([9, 10, 11], 0.0, "greedy"), ([12, 13], 1.3, "target")),
    example([4], ([3, 3], 1.0, "random")),
]


def test_doctests():
    assert doctest.testmod(collator_module).failed == 0


def test_decoder_only_right_padding():
    batch = RRHFCandidateCollator(pad_token_id=PAD, eos_token_id=EOS)(EXAMPLES)
    assert batch["input_ids"].tolist() == [
        [5, 6, 7, 8, 1, 0, 0],
        [5, 6, 7, 9, 10, 11, 1],
        [5, 6, 7, 12, 13, 1, 0],
        [4, 3, 3, 1, 0, 0, 0],
    ]
    assert batch["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 0, 0, 0],
    ]
    m = -100
    assert batch["labels"].tolist() == [
        [m, m, m, 8, 1, m, m],
        [m, m, m, 9, 10, 11, 1],
        [m, m, m, 12, 13, 1, m],
        [m, 3, 3, 1, m, m, m],
    ]
    assert "position_ids" not in batch
    assert_close(batch["rewards"], torch.tensor([2.0, 0.0, 1.3, 1.0]))
    assert batch["sources"].tolist() == [RANDOM, GREEDY, TARGET, RANDOM]
    assert batch["group_ids"].tolist() == [0, 0, 0, 1]


def test_decoder_only_left_padding_has_position_ids():
    batch = RRHFCandidateCollator(pad_token_id=PAD, eos_token_id=EOS, padding_side="left")(EXAMPLES)
    assert batch["input_ids"][0].tolist() == [0, 0, 5, 6, 7, 8, 1]
    assert batch["labels"][3].tolist() == [-100, -100, -100, -100, 3, 3, 1]
    assert batch["position_ids"][0].tolist() == [0, 0, 0, 1, 2, 3, 4]
    assert batch["position_ids"][1].tolist() == list(range(7))


def test_seq2seq_layout():
    batch = RRHFCandidateCollator(pad_token_id=PAD, eos_token_id=EOS, is_encoder_decoder=True)(EXAMPLES)
    assert batch["input_ids"].tolist() == [[5, 6, 7]] * 3 + [[4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1]] * 3 + [[1, 0, 0]]
    assert batch["labels"].tolist() == [
        [8, 1, -100, -100],
        [9, 10, 11, 1],
        [12, 13, 1, -100],
        [3, 3, 1, -100],
    ]
    assert "decoder_input_ids" not in batch and "position_ids" not in batch


def test_eos_handling_and_truncation():
    collator = RRHFCandidateCollator(
        pad_token_id=PAD, eos_token_id=EOS, is_encoder_decoder=True, max_completion_length=3
    )
    candidates = [
        {
            "completion_ids": [8, 1, 0, 0],
            "reward": 0.0,
            "source": "random",
        },  # generate() output: cut after EOS
        {
            "completion_ids": [8, 9],
            "reward": 0.0,
            "source": "random",
            "truncated": True,
        },  # hit the token limit
        {"completion_ids": [8, 9, 10, 11], "reward": 0.0, "source": "target"},  # cut by max_completion_length
        {"completion_ids": [8, 9, 10], "reward": 0.0, "source": "target"},  # EOS would be the 4th token: cut
        {"completion_ids": [8, 9], "reward": 0.0, "source": "target"},  # fits with its EOS
    ]
    labels = collator([{"prompt_ids": [5], "candidates": candidates}])["labels"].tolist()
    assert labels == [[8, 1, -100], [8, 9, -100], [8, 9, 10], [8, 9, 10], [8, 9, 1]]


def test_prompt_truncation_and_pad_to_multiple_of():
    ex = [example([1, 2, 3, 4, 5], ([9], 1.0, "random"))]
    keep_end = RRHFCandidateCollator(
        pad_token_id=PAD, eos_token_id=None, max_prompt_length=2, is_encoder_decoder=True
    )
    assert keep_end(ex)["input_ids"].tolist() == [[4, 5]]
    keep_start = RRHFCandidateCollator(
        pad_token_id=PAD,
        eos_token_id=None,
        max_prompt_length=2,
        prompt_truncation_side="right",
        pad_to_multiple_of=4,
    )
    batch = keep_start(ex)
    assert batch["input_ids"].tolist() == [[1, 2, 9, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 9, -100]]


def test_columnar_examples_match_candidate_dicts():
    columnar = [
        {
            "prompt_ids": e["prompt_ids"],
            "completion_ids": [c["completion_ids"] for c in e["candidates"]],
            "rewards": [c["reward"] for c in e["candidates"]],
            "sources": [SourceKind.parse(c["source"]) for c in e["candidates"]],
            "speedups": [c.get("speedup") for c in e["candidates"]],
        }
        for e in EXAMPLES
    ]
    collator = RRHFCandidateCollator(pad_token_id=PAD, eos_token_id=EOS)
    a, b = collator(EXAMPLES), collator(columnar)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], equal_nan=True, rtol=0, atol=0, msg=key)
    # Speed-ups given travel with their candidates; those not given are NaN (never compared by the loss).
    given = [c.get("speedup") for e in EXAMPLES for c in e["candidates"]]
    assert any(given) and [x if x is not None else "nan" for x in given] == [
        x if x == x else "nan" for x in a["speedups"].tolist()
    ]
    with pytest.raises(ValueError, match="speed-up must be positive"):
        collator(
            [{"prompt_ids": [1], "candidates": [{"completion_ids": [2], "reward": 2.0, "speedup": -1.0}]}]
        )


def test_errors():
    with pytest.raises(ValueError, match="no candidates"):
        RRHFCandidateCollator(pad_token_id=PAD)([{"prompt_ids": [1], "candidates": []}])
    with pytest.raises(ValueError, match="padding_side"):
        RRHFCandidateCollator(pad_token_id=PAD, padding_side="middle")
    with pytest.raises(ValueError, match="max_completion_length"):
        RRHFCandidateCollator(pad_token_id=PAD, max_completion_length=0)
    with pytest.raises(ValueError, match="Unknown candidate source"):
        RRHFCandidateCollator(pad_token_id=PAD)([example([1], ([2], 0.0, "beam"))])


def test_from_tokenizer_with_real_text():
    tok = make_tokenizer()
    collator = RRHFCandidateCollator.from_tokenizer(tok, is_encoder_decoder=False, padding_side="right")
    assert (collator.pad_token_id, collator.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    prompt = tok("def f ( x ) :", add_special_tokens=False).input_ids
    completion = tok("return x + 1", add_special_tokens=False).input_ids
    batch = collator([example(prompt, (completion, 1.0, "greedy"))])
    labels = batch["labels"][0]
    assert labels[labels != -100].tolist() == [*completion, tok.eos_token_id]
    assert batch["input_ids"][0].tolist() == [*prompt, *completion, tok.eos_token_id]


# ---------------------------------------------------------------- forward passes of tiny models

PROMPTS = ["def f ( x ) :", "for i in range ( n ) :"]
COMPLETIONS = [
    [("return x + 1", 1.3, "random"), ("return x", 0.0, "greedy"), ("return 2 + x + 1", 2.0, "target")],
    [("print ( i )", 1.0, "random"), ("n = n + i + 1 + 2", 1.0, "target")],
]


def tokenized_examples(tok, prompt_special_tokens: bool):
    examples = []
    for prompt, cands in zip(PROMPTS, COMPLETIONS):
        p = tok(prompt, add_special_tokens=prompt_special_tokens).input_ids
        cs = [(tok(c, add_special_tokens=False).input_ids, r, s) for c, r, s in cands]
        examples.append(example(p, *cs))
    return examples


def separate_scores(model, examples, eos, is_encoder_decoder):
    """Each candidate scored alone, unpadded, with labels built by hand."""
    scores = []
    for ex in examples:
        p = torch.tensor([ex["prompt_ids"]])
        for cand in ex["candidates"]:
            target = torch.tensor([[*cand["completion_ids"], eos]])
            if is_encoder_decoder:
                logits = model(input_ids=p, labels=target).logits
                labels = target
            else:
                ids = torch.cat([p, target], dim=1)
                logits = model(input_ids=ids).logits[:, p.shape[1] - 1 : -1]
                labels = target
            scores.append(sequence_scores(logits, labels)[0])
    return torch.cat(scores)


def tiny_t5(vocab_size):
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=vocab_size, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4, dropout_rate=0.0,
        pad_token_id=PAD, eos_token_id=2, decoder_start_token_id=PAD,
    )  # fmt: skip
    torch.manual_seed(0)
    return T5ForConditionalGeneration(config).eval()


def tiny_llama(vocab_size):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=PAD,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def test_t5_batched_scores_equal_separate_scores():
    tok = make_tokenizer()
    model = tiny_t5(len(tok))
    examples = tokenized_examples(tok, prompt_special_tokens=True)
    batch = RRHFCandidateCollator.from_tokenizer(tok, is_encoder_decoder=True)(examples)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    logits = model(**inputs).logits
    scores, _, _ = sequence_scores(logits, batch["labels"])
    assert_close(scores, separate_scores(model, examples, tok.eos_token_id, True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_decoder_batched_scores_equal_separate_scores(padding_side):
    tok = make_tokenizer()
    model = tiny_llama(len(tok))
    examples = tokenized_examples(tok, prompt_special_tokens=False)
    collator = RRHFCandidateCollator.from_tokenizer(tok, padding_side=padding_side)
    batch = collator(examples)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    logits = model(**inputs).logits
    labels = shift_labels(batch["labels"])
    scores, _, _ = sequence_scores(logits, labels)
    assert_close(scores, separate_scores(model, examples, tok.eos_token_id, False), atol=1e-5, rtol=1e-5)

    # The whole objective backpropagates without NaNs through the padded positions.
    model.train()
    out = rrhf_loss(
        model(**inputs).logits, labels, batch["rewards"], batch["sources"], batch["group_ids"],
        options=RRHFLossOptions(rank_on_differing_tokens=True),
    )  # fmt: skip
    out.loss.backward()
    assert out.best_index.tolist() == [2, 3]  # highest reward; then random beats target on the tie
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------- SFTCollator: raw rows to the same layout

SFT_ROWS = [
    {"prompt": "Write faster version:\nfor i in range ( n ) : print ( i )", "target_code": "print ( n )"},
    {"prompt": "Write faster version:\nx = 1", "target_code": "print ( 1 + 2 )"},
]


def sft_tokenizer(is_encoder_decoder: bool):
    from perfrl_trl.models import load_tokenizer, prepare_tokenizer

    return prepare_tokenizer(load_tokenizer(), is_encoder_decoder=is_encoder_decoder)


def real_rows(batch):
    """Each row's unpadded (input_ids, labels), read through the attention mask."""
    mask = batch["attention_mask"].bool()
    return [(ids[m].tolist(), labels) for ids, m, labels in zip(batch["input_ids"], mask, batch["labels"])]


def test_sft_decoder_only_masks_the_prompt_and_appends_eos():
    tok = sft_tokenizer(is_encoder_decoder=False)
    batch = SFTCollator(tok, is_encoder_decoder=False)(SFT_ROWS)
    assert {"rewards", "sources", "group_ids"}.isdisjoint(batch)
    for (ids, labels), row in zip(real_rows(batch), SFT_ROWS):
        prompt = tok(row["prompt"]).input_ids
        target = tok(row["target_code"], add_special_tokens=False).input_ids
        # The decoder's prompt carries no EOS: the only one ends the completion.
        assert prompt[-1] != tok.eos_token_id
        assert ids == [*prompt, *target, tok.eos_token_id]
        # Loss only on the target and its EOS; the prompt and the padding are masked.
        assert labels[labels != -100].tolist() == [*target, tok.eos_token_id]
        assert (labels[: len(labels) - len(target) - 1] == -100).all()
    # Left padding (the prepared decoder tokenizer's side): positions count real tokens only.
    short = batch["attention_mask"][1].bool()
    assert not short.all() and batch["position_ids"][1][short].tolist() == list(range(int(short.sum())))


def test_sft_seq2seq_puts_the_prompt_in_the_encoder_and_the_target_in_the_labels():
    tok = sft_tokenizer(is_encoder_decoder=True)
    batch = SFTCollator(tok, is_encoder_decoder=True)(SFT_ROWS)
    for (ids, labels), row in zip(real_rows(batch), SFT_ROWS):
        assert ids == tok(row["prompt"]).input_ids
        target = tok(row["target_code"], add_special_tokens=False).input_ids
        assert labels.tolist() == [*target, tok.eos_token_id] + [-100] * (len(labels) - len(target) - 1)


@pytest.mark.parametrize("is_encoder_decoder", [False, True])
def test_sft_prompt_truncation_keeps_the_start_as_generation_does(is_encoder_decoder):
    from perfrl_trl.generation import tokenize_prompts

    tok = sft_tokenizer(is_encoder_decoder)
    row = SFT_ROWS[0]
    full = tok(row["prompt"]).input_ids
    limit = 5
    assert len(full) > limit
    batch = SFTCollator(tok, is_encoder_decoder=is_encoder_decoder, max_prompt_length=limit)([row])
    generation = tokenize_prompts(tok, [row["prompt"]], limit, torch.device("cpu"))["input_ids"][0].tolist()
    ids, _ = real_rows(batch)[0]
    prompt = ids if is_encoder_decoder else ids[:limit]
    assert prompt == generation and len(prompt) == limit
    assert prompt[:-1] == full[: limit - 1]  # the start is kept (the tokenizer keeps its closing token)

    keep_end = SFTCollator(
        tok, is_encoder_decoder=is_encoder_decoder, max_prompt_length=limit, prompt_truncation_side="left"
    )
    ids, _ = real_rows(keep_end([row]))[0]
    assert (ids if is_encoder_decoder else ids[:limit]) == full[-limit:]


def test_sft_max_completion_length_cuts_the_target():
    tok = sft_tokenizer(is_encoder_decoder=True)
    long = {"prompt": "x = 1", "target_code": "print ( 1 + 2 + 3 )"}
    short = {"prompt": "x = 1", "target_code": "print"}
    target = tok(long["target_code"], add_special_tokens=False).input_ids
    word = tok(short["target_code"], add_special_tokens=False).input_ids
    assert len(target) > 3 and len(word) == 1
    labels = SFTCollator(tok, is_encoder_decoder=True, max_completion_length=3)([long, short])["labels"]
    # The long target is cut at the limit, with no room left for EOS; the short one keeps its EOS.
    assert labels.tolist() == [target[:3], [*word, tok.eos_token_id, -100]]


def test_sft_row_missing_a_column_is_a_clear_error():
    tok = sft_tokenizer(is_encoder_decoder=True)
    collator = SFTCollator(tok, is_encoder_decoder=True)
    with pytest.raises(ValueError, match=r"row 1: missing column 'target_code'"):
        collator([SFT_ROWS[0], {"prompt": "x = 1"}])
    with pytest.raises(ValueError, match=r"row 0: missing column 'prompt'"):
        collator([{"target_code": "print ( 1 )"}])
    with pytest.raises(ValueError, match=r"row 0: column 'prompt' must be a string, got 3"):
        collator([{"prompt": 3, "target_code": "print ( 1 )"}])
