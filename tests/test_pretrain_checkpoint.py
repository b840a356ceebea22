"""The recipe that regenerates the bundled checkpoint: `accelerate launch examples/pretrain_checkpoint.py`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_train_pie import _launch, tiny_pie  # tests/ is on sys.path under pytest's default import mode

from perfrl_trl.data.benchmark.build import DEFAULT_HELDOUT_FAMILIES
from perfrl_trl.data.benchmark.pretraining import EVAL_RESERVE, EVAL_SEED, PRETRAIN_SEED
from perfrl_trl.models import BUNDLED_CHECKPOINT, checkpoint_card, load_model_and_tokenizer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPT = EXAMPLES / "pretrain_checkpoint.py"


def _summary(n, passed, ci, optimized, compiled, truncated):
    return {"n_samples": n, "percent_passed": passed, "percent_passed_ci": ci, "percent_optimized": optimized,
            "percent_compiled": compiled, "truncation_rate": truncated / 100}  # fmt: skip


def test_train_pie_preset_pretrain_points_at_the_new_recipe(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import train_pie

    monkeypatch.setattr(sys, "argv", ["train_pie.py", "--preset", "pretrain", "--pretrain_stage", "package"])
    with pytest.raises(SystemExit) as exit_:
        train_pie.parse_args()
    message = exit_.value.code
    assert isinstance(message, str)  # sys.exit(str): printed to stderr, exit status 1
    assert "accelerate launch examples/pretrain_checkpoint.py" in message and "--stage" in message


@pytest.mark.skipif(
    not (BUNDLED_CHECKPOINT / "README.md").is_file(), reason="no bundled checkpoint in this checkout"
)
def test_its_defaults_are_the_settings_the_shipped_checkpoint_was_trained_with(monkeypatch):
    """The card rendered from the recipe's defaults and the shipped run's outcome is the shipped card."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import pretrain_checkpoint

    monkeypatch.setattr(sys, "argv", ["pretrain_checkpoint.py"])
    script, config, model_args = pretrain_checkpoint.parse_args()
    assert (script.preset, script.stage, script.sft_bf16) == ("bench", "all", True)
    assert (script.sft_steps, script.sft_seconds) == (4500, 5400)
    assert (script.max_eval, script.val_size, config.save_steps, config.logging_steps) == (390, 78, 500, 50)
    manifest = json.loads((BUNDLED_CHECKPOINT / "training_manifest.json").read_text())
    card = checkpoint_card(
        {  # the shipped run's outcome, as its card reports it
            "test (training families: 39)": _summary(390, 64.9, (60.0, 69.4), 62.8, 93.1, 3.3),
            "test_ood (held-out families)": _summary(200, 0.0, (0.0, 1.9), 0.0, 78.0, 9.0),
        },
        config,
        model_size=model_args.model_size,
        dropout_rate=model_args.dropout_rate,
        n_per_family=script.n_per_family,
        seed=PRETRAIN_SEED,
        n_problems=manifest["n"],
        n_families=39,
        dropped=manifest["dropped"],
        eval_seed=EVAL_SEED,
        eval_reserve=EVAL_RESERVE,
        heldout_families=DEFAULT_HELDOUT_FAMILIES,
        steps=4500,
        seconds=84 * 60,
        eval_per_family=script.eval_per_family,
        cores=2,
    )
    assert card == (BUNDLED_CHECKPOINT / "README.md").read_text()


@pytest.mark.slow
def test_pretrain_checkpoint_trains_evaluates_and_packages_a_tiny_model(tmp_path):
    out = tmp_path / "run"
    tiny = ["--preset", "bench", "--model_size", "tiny", "--families", "sum_formula,string_concat", "--n_per_family", "4",
            "--sft_steps", "2", "--sft_bf16", "false", "--per_device_train_batch_size", "2", "--warmup_steps", "0",
            "--save_steps", "1", "--logging_steps", "1", "--curve_every", "1", "--eval_per_family", "3",
            "--max_eval", "2", "--ood_eval", "2", "--val_size", "2", "--max_completion_length", "48",
            "--max_prompt_length", "160", "--eval_num_beams", "2", "--execution_n_trials", "3",
            "--disable_tqdm", "true", "--pie_dir", str(tmp_path / "no-pie")]  # fmt: skip
    proc = _launch(out, accelerate=False, script=SCRIPT, args=tiny)

    export = out / "checkpoint"
    card = (export / "README.md").read_text()
    assert "## Held-out results" in card and "| test_ood (held-out families) | 2 |" in card
    assert card.strip() in proc.stdout  # printed at the end
    manifest = json.loads((export / "training_manifest.json").read_text())
    assert manifest["seed"] == PRETRAIN_SEED and manifest["n"] == len(manifest["digests"]) > 0
    curve = json.loads((export / "training_curve.json").read_text())
    assert [p["step"] for p in curve["validation"]] == [1, 2] and curve["loss"]
    with Image.open(out / "pretrain_curve.png") as img:
        assert img.size[0] > 300
    model, tok = load_model_and_tokenizer(export)
    assert model.config.is_encoder_decoder and tok.pad_token_id is not None
    assert "## PIE" not in card and not (out / "pie_eval.json").exists()  # no PIE folder: no PIE section
    assert "Regenerate with `accelerate launch examples/pretrain_checkpoint.py --preset bench`." in card

    # a stopped package stage resumes: every finished evaluation is on disk and --resume reads it back
    assert sorted(p.name for p in (out / "package").iterdir()) == [
        "test.json",
        "test_ood.json",
        "validation_curve.json",
    ]
    saved = json.loads((out / "package" / "test.json").read_text())
    saved["result"]["n_samples"] = 999
    (out / "package" / "test.json").write_text(json.dumps(saved))
    resume = [*tiny, "--stage", "package", "--resume", "true"]
    again = _launch(out, accelerate=False, script=SCRIPT, args=resume)
    assert again.stdout.count("read back from") == 3
    assert "families: 39) | 999 |" in (export / "README.md").read_text()
    # trained again since (other weights in sft/): nothing kept is read back, every evaluation is judged anew
    shutil.copy(out / "sft" / "checkpoint-1" / "model.safetensors", out / "sft" / "model.safetensors")
    retrained = _launch(out, accelerate=False, script=SCRIPT, args=resume)
    assert "read back from" not in retrained.stdout and retrained.stdout.count("judging again") == 3
    assert "| test (training families: 39) | 2 |" in (export / "README.md").read_text()


REAL_TINY = ["--preset", "real", "--model_size", "tiny", "--families", "sum_formula,string_concat",
             "--n_per_family", "4", "--denoise_steps", "2", "--denoise_input_length", "64", "--corpus_stdlib", "false",
             "--corpus_distributions", "tqdm", "--n_rewrite_programs", "2", "--sft_steps", "2",
             "--per_device_train_batch_size", "2", "--warmup_steps", "0", "--save_steps", "1", "--logging_steps", "1",
             "--curve_every", "1", "--eval_per_family", "3", "--max_eval", "2", "--ood_eval", "2", "--val_size", "2",
             "--max_completion_length", "48", "--max_prompt_length", "160", "--eval_num_beams", "2",
             "--execution_n_trials", "3", "--disable_tqdm", "true", "--optimize_samples", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """One tiny run of every stage of `--preset real`, shared by the tests that read or go on from it."""
    root = tmp_path_factory.mktemp("real")
    pie = tiny_pie(root / "pie")
    out = root / "run"
    proc = _launch(out, accelerate=False, script=SCRIPT, args=[*REAL_TINY, "--pie_dir", str(pie)])
    return out, proc


@pytest.mark.slow
def test_the_real_preset_denoises_rewrites_trains_and_judges_pie(real_run):
    out, proc = real_run

    export = out / "checkpoint"
    corpus = json.loads((export / "corpus_manifest.json").read_text())
    assert list(corpus["packages"]) == ["tqdm"] and corpus["counts"]["files"] == len(corpus["digests"]) > 0
    curve = json.loads((export / "training_curve.json").read_text())
    assert curve["denoising_loss"] and curve["loss"]
    rewrites = json.loads((out / "rewrite_pairs" / "report.json").read_text())
    card = (export / "README.md").read_text()
    assert card.strip() in proc.stdout
    assert (
        "pretrained on real Python by span corruption" in card
        and "Span-corruption pretraining first: 2 " in card
    )
    assert (
        'A tiny decoder-only Llama-style model (built by `perfrl_trl.models.create_pretrained("decoder"'
        in card
    )
    assert not load_model_and_tokenizer(export)[0].config.is_encoder_decoder  # the preset's architecture
    assert f"- Rewrite pairs: {rewrites['pairs']} pairs from 2 generated scripts" in card
    assert "Regenerate with `accelerate launch examples/pretrain_checkpoint.py --preset real`." in card
    # PIE: only the evaluation half is judged, one row per slow program, beside PIE's targets
    results = json.loads((out / "pie_eval.json").read_text())
    # the fixture's evaluation half: three distinct programs, one of which fails its own test
    assert results["counts"] == {"pairs": 3, "problems": 2, "programs": 3, "passing_own_tests": 2,
                                 "left_out": {"wrong_answer": 1}, "judged": 2}  # fmt: skip
    assert [o["problem_id"] for o in results["checkpoint"]["outcomes"]] == ["p00001", "p00002"]
    assert results["dataset target"]["summary"]["percent_passed"] == 100.0
    assert results["optimize"]["programs"] == 2 and all(
        o["n_generated"] == 2 for o in results["optimize"]["outcomes"]
    )
    opt = results["optimize"]
    assert opt["found_by_model"] + opt["found_by_rewrite"] == opt["found"]
    assert f"the model's own candidate for {opt['found_by_model']}, a generic rewrite\nfor" in card
    assert "## PIE, evaluation half" in card and "| PIE target | 2 | 100.0 | 100.0 | 100.0 |" in card
    # the model learnt with sentinels; the manifest holds the rewrite pairs' slow programs too
    _, tok = load_model_and_tokenizer(export)
    assert "<extra_id_0>" in tok.get_vocab()
    manifest = json.loads((export / "training_manifest.json").read_text())
    assert len(manifest["digests"]) > manifest["n"]


def test_the_denoise_stage_goes_on_from_a_denoised_model_and_keeps_its_whole_history(real_run, tmp_path):
    # The real preset's decoder-only model, denoised again from its `denoise` output: the record of the second
    # run counts both (so that a long schedule can be split over several runs).
    first = real_run[0] / "denoise"
    stage = ["--preset", "real", "--stage", "denoise", "--model_arch", "decoder", "--model_size", "tiny",
             "--model_name_or_path", str(first), "--denoise_steps", "3", "--denoise_input_length", "64",
             "--corpus_stdlib", "false", "--corpus_distributions", "tqdm", "--per_device_train_batch_size", "2",
             "--denoise_warmup_steps", "0", "--save_steps", "1", "--logging_steps", "1", "--disable_tqdm", "true",
             "--pie_dir", str(tmp_path / "no-pie")]  # fmt: skip
    _launch(tmp_path / "second", accelerate=False, script=SCRIPT, args=stage)

    before = json.loads((first / "denoise_result.json").read_text())
    after = json.loads((tmp_path / "second" / "denoise" / "denoise_result.json").read_text())
    assert before["steps"] == 2 and after["steps"] == 5
    assert after["continued_from"] == {"path": str(first), "steps": 2, "seconds": before["seconds"]}
    assert after["seconds"] > before["seconds"]
    assert [x["step"] for x in after["losses"]] == [1, 2, 3, 4, 5]
    model, tok = load_model_and_tokenizer(tmp_path / "second" / "denoise")
    assert not model.config.is_encoder_decoder and "<extra_id_0>" in tok.get_vocab()
