"""Supervised fine-tuning and the shared callbacks, with the real Trainer and a tiny model."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.execution.cores import usable_cores
from perfrl_trl.models import build_model, load_tokenizer
from perfrl_trl.trainer.callbacks import RLCurve, WallClockBudget
from perfrl_trl.trainer.sft import count_unfit_targets, length_grouped, supervised_finetune


@pytest.fixture(scope="module")
def train():
    return build_benchmark(n_per_family=10, families=["sum_formula", "string_concat"], heldout_families=())["train"]


def _args(tmp_path, **kw):
    return TrainingArguments(
        str(tmp_path), report_to="none", remove_unused_columns=False, per_device_train_batch_size=4,
        learning_rate=3e-3, logging_steps=1, save_strategy="no", use_cpu=True, disable_tqdm=True, **kw
    )


def test_sft_learns_uses_all_cores_and_groups_by_length(train, tmp_path):
    tok = load_tokenizer()
    model = build_model("t5", "tiny", tok, dropout_rate=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    result = supervised_finetune(
        model, tok, train, _args(tmp_path, max_steps=12, **length_grouped()), 256, 256
    )
    assert result.steps == 12 and result.threads == usable_cores() == torch.get_num_threads()
    losses = [p["loss"] for p in result.losses]
    assert len(losses) == 12 and losses[-1] < losses[0]
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert "length" in result.trainer.train_dataset.column_names


def test_wall_clock_budget_stops_training(train, tmp_path):
    tok = load_tokenizer()
    result = supervised_finetune(
        build_model("t5", "tiny", tok), tok, train, _args(tmp_path, max_steps=10_000), 128, 128, seconds=1.0
    )
    assert 1 <= result.steps < 10_000


def test_sft_rejects_bad_input(train, tmp_path):
    tok = load_tokenizer()
    model = build_model("t5", "tiny", tok)
    with pytest.raises(ValueError, match="target_code"):
        supervised_finetune(model, tok, train.remove_columns("target_code"), _args(tmp_path, max_steps=1), 64, 64)
    bad = TrainingArguments(str(tmp_path), report_to="none", max_steps=1)  # remove_unused_columns=True
    with pytest.raises(ValueError, match="remove_unused_columns"):
        supervised_finetune(model, tok, train, bad, 64, 64)
    with pytest.raises(ValueError, match="seconds"):
        WallClockBudget(0)


def test_unfit_targets_are_counted_and_warned(train, caplog):
    tok = load_tokenizer()
    longest = max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in train["target_code"])
    with caplog.at_level(logging.WARNING):
        assert count_unfit_targets(train, tok, longest + 1) == 0
        assert not caplog.records
        unfit = count_unfit_targets(train, tok, longest)  # the longest has no room left for its EOS
    assert unfit >= 1 and f"{unfit} of {len(train)} targets" in caplog.text


def test_rl_curve_joins_candidate_rates_and_held_out_points():
    curve = RLCurve()
    state, control = TrainerState(), TrainerControl()
    for epoch, passed in ((0.0, 10.0), (1.0, 20.0), (2.0, 40.0)):
        state.epoch = epoch
        curve.on_evaluate(None, state, control, metrics={"eval_percent_passed": passed, "eval_percent_compiled": 90.0})
    log = [
        {"epoch": 0.0, "pass_rate": 0.1, "compile_rate": 1.0},
        {"epoch": 0.5, "pass_rate": 0.3, "compile_rate": 1.0},
        {"epoch": 1.5, "pass_rate": 0.5, "compile_rate": 0.5},
    ]
    history = curve.history(log, rl_steps=2)
    assert [h["step"] for h in history] == [0, 1, 2]
    assert history[0]["eval_pass_rate"] == pytest.approx(0.1)
    assert history[1]["pass_rate"] == pytest.approx(0.2) and history[1]["eval_pass_rate"] == pytest.approx(0.2)
    assert history[2]["compile_rate"] == pytest.approx(0.5) and history[2]["eval_pass_rate"] == pytest.approx(0.4)
