"""The decoder-only checkpoint shipped beside the T5: loadable offline as a causal LM, small, named "bundled-causal"
in the recipes and in `perfrl-trl optimize`, and a trained model (it rewrites an unseen benchmark program)."""

from __future__ import annotations

import json

import pytest
import torch

from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.data.benchmark.pretraining import EVAL_SEED, program_digest
from perfrl_trl.models import (
    BUNDLED_CAUSAL_CHECKPOINT,
    BUNDLED_CHECKPOINT,
    BUNDLED_CHECKPOINTS,
    ModelArguments,
    load_model_and_tokenizer,
    resolve_checkpoint,
)
from perfrl_trl.models.bundled import MAX_BUNDLED_BYTES


@pytest.fixture(scope="module")
def problem() -> dict:
    """An evaluation-seed problem (never trained on) with a short prompt: a string built by prepending."""
    return build_benchmark(
        n_per_family=10, seed=EVAL_SEED, families=["reverse_prepend"], heldout_families=()
    )["test"][0]


@pytest.fixture
def one_thread():
    # Two torch threads on a busy 2-core machine spin-wait: greedy decoding gets several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_loads_offline_as_a_float32_causal_lm_with_both_loaders(monkeypatch):
    import huggingface_hub
    from transformers import AutoModelForCausalLM

    # Hub offline mode: any request to the Hub raises, so both loads below read the package's files only.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model, tok = load_model_and_tokenizer(BUNDLED_CAUSAL_CHECKPOINT)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.config.is_encoder_decoder
    assert model.dtype == torch.float32 and tok.padding_side == "left"
    assert model.config.pad_token_id == tok.pad_token_id
    plain = AutoModelForCausalLM.from_pretrained(BUNDLED_CAUSAL_CHECKPOINT)
    assert plain.dtype == torch.float32
    torch.testing.assert_close(plain.model.embed_tokens.weight, model.model.embed_tokens.weight)
    size = sum(f.stat().st_size for f in BUNDLED_CAUSAL_CHECKPOINT.rglob("*") if f.is_file())
    assert size <= MAX_BUNDLED_BYTES
    # The card says how it scores, including where it fails.
    card = (BUNDLED_CAUSAL_CHECKPOINT / "README.md").read_text()
    assert "## Held-out results" in card and "| test_ood (60) | pass % | 25.0 [15.8, 37.2] |" in card
    assert "It passes 0 of the 80 PIE programs" in card


def test_it_rewrites_an_unseen_benchmark_program(problem, one_thread):
    """Greedy decoding of one evaluation-seed prompt ends with EOS, compiles, and differs from the input."""
    from perfrl_trl.generation import beam_programs
    from perfrl_trl.trainer import RRHFConfig

    manifest = json.loads((BUNDLED_CAUSAL_CHECKPOINT / "training_manifest.json").read_text())
    assert program_digest(problem["input_code"]) not in manifest["digests"]
    model, tok = load_model_and_tokenizer(BUNDLED_CAUSAL_CHECKPOINT)
    config = RRHFConfig("/tmp/unused", report_to="none", max_completion_length=256, max_prompt_length=256,
                        eval_num_beams=1, eval_num_return_sequences=1)  # fmt: skip
    (programs,), (truncated,) = beam_programs(model, tok, [problem["prompt"]], config)
    assert not truncated[0]
    compile(programs[0], "<generated>", "exec")
    assert programs[0].strip() != problem["input_code"].strip()


def test_bundled_names_resolve_in_model_arguments(tmp_path, monkeypatch):
    assert ModelArguments("bundled-causal").model_name_or_path == str(BUNDLED_CAUSAL_CHECKPOINT)
    assert ModelArguments("bundled").model_name_or_path == str(BUNDLED_CHECKPOINT)
    assert ModelArguments().model_name_or_path is None  # the recipe chooses
    assert set(BUNDLED_CHECKPOINTS) == {"bundled", "bundled-causal"}
    assert resolve_checkpoint(None) == str(BUNDLED_CHECKPOINT)
    # Users' own models pass through unchanged: Hub ids, folders, and a folder whose name starts with "bundled".
    assert ModelArguments("Salesforce/codet5-small").model_name_or_path == "Salesforce/codet5-small"
    assert ModelArguments(str(tmp_path)).model_name_or_path == str(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bundled-run").mkdir()
    assert ModelArguments("bundled-run").model_name_or_path == "bundled-run"
    with pytest.raises(
        ValueError, match=r"unknown bundled checkpoint 'bundled-t5'.*'bundled', 'bundled-causal'"
    ):
        ModelArguments("bundled-t5")


def test_optimize_cli_takes_the_bundled_causal_name(problem, tmp_path, capsys, one_thread):
    """`perfrl-trl optimize --model bundled-causal -n 1` loads the causal checkpoint, and its greedy decode is the
    verified faster version; a mistyped bundled name is an error (exit 2) naming the choices."""
    from perfrl_trl.cli import main

    program = tmp_path / "slow.py"
    program.write_text(problem["input_code"], encoding="utf-8")
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "input.0.txt").write_text(problem["tests"][0]["input"], encoding="utf-8")
    (tests / "output.0.txt").write_text(problem["tests"][0]["output"], encoding="utf-8")
    args = ["optimize", str(program), "--tests", str(tests), "-n", "1", "--seed", "0", "--no-rewrites",
            "--max-new-tokens", "128", "--json"]  # fmt: skip

    status = main([*args, "--model", "bundled-causal"])
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == str(BUNDLED_CAUSAL_CHECKPOINT)
    assert result["generated"] == 2  # the greedy decode and one sample
    assert status == 0 and result["found"] and result["source"] == "beam", result

    assert main([*args, "--model", "bundled-gpt"]) == 2
    err = capsys.readouterr().err
    assert "unknown bundled checkpoint 'bundled-gpt'" in err and "'bundled-causal'" in err
