"""Denoising pretraining: a real tiny T5 and a tiny decoder-only model learn span corruption on standard-library
files, and are saved whole."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from datasets import Dataset
from transformers import TrainingArguments

from perfrl_trl.data import span_corruption_lengths
from perfrl_trl.models import build_model, load_model_and_tokenizer, load_tokenizer
from perfrl_trl.trainer.denoising import corpus_windows, denoising_pretrain

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _args(path, steps, **kw):
    return TrainingArguments(
        str(path), max_steps=steps, per_device_train_batch_size=4, learning_rate=1e-2, report_to="none",
        logging_steps=1, save_strategy="no", disable_tqdm=True, use_cpu=True, seed=0, **kw,
    )  # fmt: skip


def test_corpus_windows_fit_the_encoder_after_corruption():
    tok = load_tokenizer()
    corpus = Dataset.from_dict(
        {"text": [(STDLIB / "colorsys.py").read_text(), (STDLIB / "bisect.py").read_text()]}
    )
    windows = corpus_windows(corpus, tok, 64)
    window, _ = span_corruption_lengths(64)
    assert {len(w) for w in windows["input_ids"][:-1]} == {window}
    assert "<extra_id_0>" in tok.get_vocab()  # the tokenizer gained the sentinels
    with pytest.raises(ValueError, match="no column 'source'"):
        corpus_windows(corpus, tok, 64, text_column="source")
    with pytest.raises(ValueError, match="empty"):
        corpus_windows(corpus.select([]), tok, 64)


@pytest.mark.parametrize("arch", ["t5", "decoder"])
def test_denoising_pretrain_lowers_the_loss_and_saves_model_with_sentinels(tmp_path, arch):
    tok = load_tokenizer()
    corpus = Dataset.from_dict({"text": [(STDLIB / "colorsys.py").read_text()]})
    windows = corpus_windows(corpus, tok, 48)
    model = build_model(arch, "tiny", load_tokenizer())  # built before the sentinels: must be resized
    assert model.get_input_embeddings().num_embeddings < len(tok)
    result = denoising_pretrain(
        model, tok, windows, _args(tmp_path / "run", 40), 48, full_target_fraction=0.5
    )
    assert result.steps == 40 and model.get_input_embeddings().num_embeddings == len(tok)
    first, last = result.losses[0]["loss"], sum(r["loss"] for r in result.losses[-5:]) / 5
    assert last < 0.8 * first  # one small file, 40 steps: the loss must fall

    result.trainer.save_model(tmp_path / "saved")
    loaded, loaded_tok = load_model_and_tokenizer(tmp_path / "saved")
    assert len(loaded_tok) == len(tok) and loaded.get_input_embeddings().num_embeddings == len(tok)


def test_denoising_pretrain_refuses_what_it_cannot_train(tmp_path):
    tok = load_tokenizer()
    windows = corpus_windows(Dataset.from_dict({"text": ["x = 1\n" * 30]}), tok, 32)
    with pytest.raises(ValueError, match="input_ids"):
        denoising_pretrain(build_model("t5", "tiny", tok), tok, windows.select([]), _args(tmp_path, 1), 32)
