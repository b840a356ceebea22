"""The SFT checkpoint shipped in the package: loadable offline, small, and never trained on an evaluation problem."""

from __future__ import annotations

import json

import pytest
import torch

from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.data.benchmark.build import generate_problems
from perfrl_trl.data.benchmark.pretraining import (
    EVAL_RESERVE,
    EVAL_SEED,
    PRETRAIN_SEED,
    pretraining_problems,
    program_digest,
)
from perfrl_trl.models import BUNDLED_CHECKPOINT, load_model_and_tokenizer
from perfrl_trl.models.bundled import MAX_BUNDLED_BYTES
from perfrl_trl.presets import preset_defaults

pytestmark = pytest.mark.skipif(
    not (BUNDLED_CHECKPOINT / "config.json").is_file(), reason="no bundled checkpoint in this checkout"
)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((BUNDLED_CHECKPOINT / "training_manifest.json").read_text())


def test_loads_offline_as_float32_with_both_loaders():
    from transformers import AutoModelForSeq2SeqLM

    model, _ = load_model_and_tokenizer(BUNDLED_CHECKPOINT)
    assert model.dtype == torch.float32 and model.config.is_encoder_decoder
    plain = AutoModelForSeq2SeqLM.from_pretrained(BUNDLED_CHECKPOINT)
    assert plain.dtype == torch.float32
    torch.testing.assert_close(plain.shared.weight, model.shared.weight)
    size = sum(f.stat().st_size for f in BUNDLED_CHECKPOINT.rglob("*") if f.is_file())
    assert size <= MAX_BUNDLED_BYTES
    card = (BUNDLED_CHECKPOINT / "README.md").read_text()
    assert "## Held-out results" in card and "test_ood" in card


def test_it_writes_a_whole_program():
    """Greedy decoding of one prompt ends with EOS and compiles (a trained model, not random weights)."""
    from perfrl_trl.comparison import beam_programs
    from perfrl_trl.trainer import RRHFConfig

    model, tok = load_model_and_tokenizer(BUNDLED_CHECKPOINT)
    row = build_benchmark(n_per_family=10, seed=EVAL_SEED, families=["sum_formula"], heldout_families=())[
        "test"
    ][0]
    config = RRHFConfig(
        "/tmp/unused",
        report_to="none",
        max_completion_length=256,
        max_prompt_length=256,
        eval_num_beams=1,
        eval_num_return_sequences=1,
    )
    (programs,), (truncated,) = beam_programs(model, tok, [row["prompt"]], config)
    assert not truncated[0]
    compile(programs[0], "<generated>", "exec")


def test_no_evaluation_problem_is_in_its_training_data(manifest):
    """Every split of `build_benchmark(n_per_family=N, seed=EVAL_SEED)` for N up to EVAL_RESERVE (the presets'
    included) draws from the first EVAL_RESERVE problems per family of that seed; none was trained on."""
    trained = set(manifest["digests"])
    assert manifest["seed"] == PRETRAIN_SEED != EVAL_SEED
    assert max(preset_defaults(p)["n_per_family"] for p in ("default", "compare")) <= EVAL_RESERVE
    reserved = generate_problems(EVAL_RESERVE, EVAL_SEED, outputs=False)  # the programs only: 6x faster
    digests = {program_digest(p["input_code"]) for p in reserved}
    assert len(digests) > 8000 and not digests & trained
    # The premise: a benchmark's splits are the first N generated problems of each family, whatever N.
    bench = build_benchmark(n_per_family=5, seed=EVAL_SEED)
    for split in ("train", "validation", "test", "test_ood"):
        assert {program_digest(code) for code in bench[split]["input_code"]} <= digests, split


def test_manifest_is_what_the_pretrain_preset_generates(manifest):
    """The recorded training programs are the ones `pretraining_problems` regenerates (a sample per family)."""
    sample, _ = pretraining_problems(3, seed=manifest["seed"], families=["sum_formula", "gcd_loop", "lis"])
    assert len(sample) >= 8
    assert {program_digest(p["input_code"]) for p in sample} <= set(manifest["digests"])
    assert len(manifest["digests"]) == manifest["n"]
