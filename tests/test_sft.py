"""Supervised fine-tuning and the shared callbacks, with the real Trainer and a tiny model."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.execution.cores import usable_cores
from perfrl_trl.models import build_model, load_tokenizer
from perfrl_trl.trainer.callbacks import UNCAPPED_STEPS, BudgetProgress, RLCurve, WallClockBudget
from perfrl_trl.trainer.sft import count_unfit_targets, length_grouped, supervised_finetune


@pytest.fixture(scope="module")
def train():
    return build_benchmark(n_per_family=10, families=["sum_formula", "string_concat"], heldout_families=())[
        "train"
    ]


def _args(tmp_path, **kw):
    return TrainingArguments(
        str(tmp_path),
        report_to="none",
        remove_unused_columns=False,
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        **kw,
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


@pytest.mark.parametrize("max_steps, shown", [(10_000, "/10000"), (UNCAPPED_STEPS, "")])
def test_wall_clock_budget_stops_training_and_its_bar_counts_the_budget(
    train, tmp_path, capfd, max_steps, shown
):
    tok = load_tokenizer()
    args = _args(tmp_path, max_steps=max_steps)
    args.disable_tqdm = False
    result = supervised_finetune(build_model("t5", "tiny", tok), tok, train, args, 128, 128, seconds=1.0)
    assert 1 <= result.steps < 10_000
    assert not any(isinstance(c, ProgressCallback) and not isinstance(c, BudgetProgress)
                   for c in result.trainer.callback_handler.callbacks)  # fmt: skip
    bar = capfd.readouterr().err.replace("\r", "\n").splitlines()
    last = [line for line in bar if "of 0:01" in line][-1]  # the budget, not an ETA for 10,000 steps
    assert last.startswith("100%|") and re.search(rf"\| step {result.steps}{shown}, 0:\d\d of 0:01$", last), (
        last
    )


def test_sft_rejects_bad_input(train, tmp_path):
    tok = load_tokenizer()
    model = build_model("t5", "tiny", tok)
    with pytest.raises(ValueError, match="target_code"):
        supervised_finetune(
            model, tok, train.remove_columns("target_code"), _args(tmp_path, max_steps=1), 64, 64
        )
    bad = TrainingArguments(str(tmp_path), report_to="none", max_steps=1)  # remove_unused_columns=True
    with pytest.raises(ValueError, match="remove_unused_columns"):
        supervised_finetune(model, tok, train, bad, 64, 64)
    with pytest.raises(ValueError, match="seconds"):
        WallClockBudget(0)
    with pytest.raises(ValueError, match="seconds"):
        BudgetProgress(-1)


def test_unfit_targets_are_counted_and_warned(train, caplog):
    tok = load_tokenizer()
    longest = max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in train["target_code"])
    with caplog.at_level(logging.WARNING):
        assert count_unfit_targets(train, tok, longest + 1) == 0
        assert not caplog.records
        unfit = count_unfit_targets(train, tok, longest)  # the longest has no room left for its EOS
    assert unfit >= 1 and f"{unfit} of {len(train)} targets" in caplog.text


def test_rl_curve_is_per_update_and_joins_candidate_rates_with_held_out_points():
    curve = RLCurve()
    state, control = TrainerState(), TrainerControl()
    # Step 0 before training, then evaluations after updates 2 and 3 (the last); epochs count passes.
    for step, epoch, passed, beats in ((0, 0.0, 10.0, 0.0), (2, 0.5, 20.0, 0.25), (3, 0.75, 40.0, 0.5)):
        state.global_step, state.epoch = step, epoch
        metrics = {
            "eval_percent_passed": passed,
            "eval_percent_compiled": 90.0,
            "eval_beats_target_rate": beats,
        }
        curve.on_evaluate(None, state, control, metrics=metrics)
    log = [
        {"epoch": 0.0, "step": 1, "pass_rate": 0.1, "beats_target_rate": None, "groups_without_signal": 1.0},
        # Two entries feed update 2 (gradient accumulation): their mean; a None rate is left out of it.
        {"epoch": 0.25, "step": 2, "pass_rate": 0.3, "beats_target_rate": 0.2, "groups_without_signal": 0.5},
        {"epoch": 0.25, "step": 2, "pass_rate": 0.5, "beats_target_rate": None, "groups_without_signal": 0.0},
        {"epoch": 0.5, "step": 3, "pass_rate": 0.7, "compile_rate": 1.0},
    ]
    history = curve.history(log)
    assert [h["step"] for h in history] == [0, 1, 2, 3]
    assert history[0] == {"step": 0, "epoch": 0.0, "eval_pass_rate": 0.1, "eval_compile_rate": 0.9,
                          "eval_beats_target_rate": 0.0}  # fmt: skip
    assert "eval_pass_rate" not in history[1] and history[1]["beats_target_rate"] is None
    assert history[2]["pass_rate"] == pytest.approx(0.4) and history[2]["beats_target_rate"] == pytest.approx(
        0.2
    )
    assert history[2]["groups_without_signal"] == pytest.approx(0.25)
    assert history[2]["eval_pass_rate"] == pytest.approx(0.2) and history[2]["eval_beats_target_rate"] == 0.25
    assert history[3]["pass_rate"] == pytest.approx(0.7) and history[3]["eval_pass_rate"] == pytest.approx(
        0.4
    )
    assert [h["epoch"] for h in history] == [0.0, 0.0, 0.25, 0.5]  # when each update's candidates were made
    # The candidates' trailing moving average, skipping missing rates; the start point has no candidates.
    assert "pass_rate_avg" not in history[0]
    assert [h["pass_rate_avg"] for h in history[1:]] == pytest.approx([0.1, 0.25, 0.4])
    assert [h["beats_target_rate_avg"] for h in history[1:]] == [None, pytest.approx(0.2), pytest.approx(0.2)]
    assert [h["pass_rate_avg"] for h in curve.history(log, window=2)[1:]] == pytest.approx([0.1, 0.25, 0.55])
    with pytest.raises(ValueError, match="window"):
        curve.history(log, window=0)
    # Points judged after training join the curve at their update, over what an evaluation recorded there.
    curve.add_heldout({3: {"eval_pass_rate": 0.5, "eval_pass_ci": [0.3, 0.7], "eval_n": 20}})
    last = curve.history(log)[-1]
    assert (last["eval_pass_rate"], last["eval_pass_ci"], last["eval_n"]) == (0.5, [0.3, 0.7], 20)
    assert last["eval_compile_rate"] == pytest.approx(0.9)  # kept from the evaluation at update 3


def test_finetune_trains_a_folder_like_the_run_and_saves_it(train, tmp_path):
    # The recipes' SFT stages: the run's RRHFConfig sets batch, seed and device; the model lands in output_dir.
    from perfrl_trl import RRHFConfig
    from perfrl_trl.models import ModelArguments, load_model_and_tokenizer
    from perfrl_trl.trainer.sft import finetune

    start = ModelArguments(model_size="tiny").new_model(tmp_path / "base", seed=0)
    config = RRHFConfig(str(tmp_path / "run"), report_to="none", per_device_train_batch_size=4, logging_steps=1,
                        max_prompt_length=256, max_completion_length=256, use_cpu=True, disable_tqdm=True)  # fmt: skip
    energy, result = finetune(start, str(tmp_path / "sft"), config, train, 3e-3, max_steps=6)
    assert result.steps == 6 and energy.seconds > 0
    assert result.trainer.args.per_device_train_batch_size == 4 and result.trainer.args.seed == config.seed
    before = load_model_and_tokenizer(start)[0].state_dict()
    after = load_model_and_tokenizer(str(tmp_path / "sft"))[0].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"model_arch": "gpt"}, "--model_arch"),
        ({"model_size": "huge"}, "--model_size"),
        ({"dropout_rate": 1.5}, "--dropout_rate"),
    ],
)
def test_model_arguments_name_the_bad_field(kwargs, field):
    from perfrl_trl.models import ModelArguments

    with pytest.raises(ValueError, match=field):
        ModelArguments(**kwargs)
