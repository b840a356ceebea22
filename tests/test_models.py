"""Bundled tokenizer (exact round-trip, special ids) and the model factories (train, save, reload, sizes)."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from perfrl_trl.models import (
    BUNDLED_TOKENIZER_DIR,
    build_model,
    count_parameters,
    create_pretrained,
    load_model_and_tokenizer,
    load_tokenizer,
    model_config,
    prepare_tokenizer,
)

REPO = Path(__file__).resolve().parents[1]

TRICKY_SOURCES = {
    "tabs_and_mixed_indent": "def f(x):\n\tif x:\n\t\treturn 1\n        \t# mixed\n\treturn 0\n",
    "unicode": "s = 'héllo wörld 世界 🎉 e\u0301 \u05e9\u05dc\u05d5\u05dd'\nπ = 3.14  # ünïcode identifier\n",
    "blank_lines_and_trailing_ws": "\n\n\nimport sys   \n\n\n\nx = 1\t \n\n",
    "crlf_no_final_newline": "a = 1\r\nb = 2\r\n\r\nprint(a + b)",
    "pie_style_double_newlines": "N = int(input())\n\n\n\nprint(N * 2)",
    "odd_bytes": "x = '\\x00'\f\nv = '\x0b\x1b[0m'\n    \n \n",
    "leading_spaces": "   \n  x=1",
    "empty": "",
    "strings_and_escapes": 'r = r"\\d+\\s*"\nq = """ doc\n  with  "quotes" """\nb = b"\\xff"\n',
}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def roundtrip(tokenizer, src: str) -> str:
    return tokenizer.decode(tokenizer(src).input_ids, skip_special_tokens=True)


@pytest.mark.parametrize("name", sorted(TRICKY_SOURCES))
def test_tokenizer_roundtrips_tricky_sources_exactly(tok, name):
    src = TRICKY_SOURCES[name]
    assert roundtrip(tok, src) == src


def test_tokenizer_roundtrips_real_code_and_batches(tok):
    sources = [p.read_text(encoding="utf-8") for p in sorted((REPO / "perfrl_trl").rglob("*.py"))]
    sources = [s for s in sources if "<pad>" not in s and "</s>" not in s] + list(TRICKY_SOURCES.values())
    assert len(sources) > len(TRICKY_SOURCES)
    assert all(roundtrip(tok, s) == s for s in sources)
    batch = tok([*sources[:4], "x"], padding=True)
    assert tok.batch_decode(batch.input_ids, skip_special_tokens=True) == [*sources[:4], "x"]


def test_literal_special_token_text_in_source(tok):
    # Like every HF tokenizer (and TRL, which appends `eos_token` as text), "</s>" typed in a string is read
    # as the special token; `split_special_tokens=True` encodes it as plain text and round-trips exactly.
    src = "html = '<s>bold</s>'\n"
    assert tok.eos_token_id in tok(src).input_ids[:-1]
    ids = tok(src, split_special_tokens=True).input_ids
    assert tok.eos_token_id not in ids[:-1]
    assert tok.decode(ids, skip_special_tokens=True) == src


def test_tokenizer_special_tokens_and_files(tok):
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<pad>", "<s>", "</s>", "<unk>"]
    assert len(tok) == 8192
    ids = tok("x = 1").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id  # CodeT5 convention: <s> ... </s>
    assert tok.clean_up_tokenization_spaces is False
    assert (BUNDLED_TOKENIZER_DIR / "tokenizer.json").stat().st_size < 2_000_000
    # A 4-space indent or a common keyword is one token: the vocab actually learned Python.
    assert len(tok("    ", add_special_tokens=False).input_ids) == 1
    assert len(tok(" return", add_special_tokens=False).input_ids) == 1


def test_load_tokenizer_passes_strings_to_autotokenizer(tmp_path, tok):
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(str(tmp_path))
    assert again("def f(): pass").input_ids == tok("def f(): pass").input_ids


def test_provenance_matches_bundled_file():
    provenance = json.loads((BUNDLED_TOKENIZER_DIR / "provenance.json").read_text())
    digest = hashlib.sha256((BUNDLED_TOKENIZER_DIR / "tokenizer.json").read_bytes()).hexdigest()
    assert provenance["tokenizer_sha256"] == digest
    assert provenance["vocab_size"] == 8192


@pytest.mark.slow
def test_train_tokenizer_script_reproduces_bundled_file():
    provenance = json.loads((BUNDLED_TOKENIZER_DIR / "provenance.json").read_text())
    if provenance["python"] != platform.python_version():
        pytest.skip(f"the bundled tokenizer was trained on Python {provenance['python']}'s stdlib")
    cmd = [sys.executable, str(REPO / "scripts" / "train_tokenizer.py"), "--check"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_prepare_tokenizer_for_decoder_only(tok):
    dec = prepare_tokenizer(load_tokenizer(), is_encoder_decoder=False)
    assert dec.padding_side == "left"
    ids = dec("x = 1").input_ids
    assert ids[0] == dec.bos_token_id and ids[-1] != dec.eos_token_id
    assert dec.decode(ids, skip_special_tokens=True) == "x = 1"
    batch = dec(["a", "a + b + c"], padding=True)
    assert batch.input_ids[0][0] == dec.pad_token_id and batch.attention_mask[0][0] == 0
    # Seq2seq tokenizers are left alone.
    assert prepare_tokenizer(load_tokenizer(), is_encoder_decoder=True)("x").input_ids == tok("x").input_ids

    no_pad = load_tokenizer()
    no_pad.pad_token = None
    assert prepare_tokenizer(no_pad, is_encoder_decoder=False).pad_token == no_pad.eos_token


def _batch(tok, arch: str) -> dict[str, torch.Tensor]:
    prompts, targets = ["x = [1, 2, 3]\n", "for i in range(3):\n"], ["print(sum(x))\n", "    print(i)\n"]
    if arch == "t5":
        enc = tok(prompts, padding=True, return_tensors="pt")
        labels = tok(targets, padding=True, return_tensors="pt").input_ids
        labels[labels == tok.pad_token_id] = -100
        return {**enc, "labels": labels}
    enc = tok([p + t for p, t in zip(prompts, targets)], padding=True, return_tensors="pt")
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    return {**enc, "labels": labels}


@pytest.mark.parametrize("arch", ["t5", "decoder"])
def test_tiny_model_trains_one_step(tok, arch):
    model = build_model(arch, "tiny", tok, seed=0)
    batch = _batch(prepare_tokenizer(load_tokenizer(), arch == "t5"), arch)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.eval()  # no dropout: the two losses are comparable
    with torch.no_grad():
        loss_before = model(**batch).loss.item()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(**batch).loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        assert model(**batch).loss.item() < loss_before
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged


@pytest.mark.parametrize("arch", ["t5", "decoder"])
def test_create_pretrained_reloads_with_identical_outputs(tmp_path, tok, arch):
    path = create_pretrained(arch, "tiny", tmp_path / arch, tokenizer=tok, seed=3)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in Path(path).iterdir()
    }
    fresh = build_model(arch, "tiny", tok, seed=3).eval()
    model, loaded_tok = load_model_and_tokenizer(path)
    auto = AutoModelForSeq2SeqLM if arch == "t5" else AutoModelForCausalLM
    plain = auto.from_pretrained(path).eval()
    assert type(model).__name__ == ("T5ForConditionalGeneration" if arch == "t5" else "LlamaForCausalLM")
    assert loaded_tok.padding_side == ("right" if arch == "t5" else "left")
    # The saved tokenizer carries the family's conventions without help from this package.
    plain_tok = AutoTokenizer.from_pretrained(path)
    assert plain_tok.padding_side == loaded_tok.padding_side
    assert (plain_tok("x").input_ids[-1] == plain_tok.eos_token_id) == (arch == "t5")  # no EOS after a prompt

    batch = _batch(loaded_tok, arch)
    with torch.no_grad():
        expected = fresh(**batch).logits
        torch.testing.assert_close(model.eval()(**batch).logits, expected, rtol=0, atol=0)
        torch.testing.assert_close(plain(**batch).logits, expected, rtol=0, atol=0)
        out = model.generate(
            **loaded_tok(["a = 1\n", "def f():\n"], padding=True, return_tensors="pt"),
            max_new_tokens=3,
            do_sample=False,
        )
    assert out.shape[0] == 2

    with pytest.raises(FileExistsError):
        create_pretrained(arch, "tiny", path)
    assert create_pretrained(arch, "tiny", path, overwrite=True) == path


def test_seed_controls_initialisation_only(tok):
    state = torch.random.get_rng_state()
    a, b, c = (build_model("t5", "tiny", tok, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    assert torch.equal(a.shared.weight, b.shared.weight)
    assert not torch.equal(a.shared.weight, c.shared.weight)


@pytest.mark.parametrize("arch", ["t5", "decoder"])
def test_preset_sizes_are_ordered(tok, arch):
    counts = [count_parameters(model_config(arch, s, tok)) for s in ("tiny", "small", "base", "codet5-small")]
    assert counts == sorted(counts) and len(set(counts)) == 4
    assert counts[0] < 1_000_000
    assert 5_000_000 <= counts[1] <= 10_000_000
    assert build_model(arch, "tiny", tok).num_parameters() == counts[0]


def test_codet5_small_preset_matches_codet5_small():
    # CodeT5-small has 60,492,288 parameters with its 32,100-token vocabulary.
    config = model_config("t5", "codet5-small", vocab_size=32100)
    assert count_parameters(config) == 60_492_288
    assert (config.decoder_start_token_id, config.pad_token_id, config.eos_token_id) == (0, 0, 2)
    decoder = count_parameters(model_config("decoder", "codet5-small", vocab_size=32100))
    assert 55_000_000 < decoder < 65_000_000


def test_bad_preset_names():
    with pytest.raises(ValueError, match="arch"):
        model_config("gpt", "tiny")
    with pytest.raises(ValueError, match="size"):
        model_config("t5", "huge")
