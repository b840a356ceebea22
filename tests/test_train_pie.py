"""The user-facing main job, end to end at a tiny size: `accelerate launch examples/train_pie.py`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from perfrl_trl.models import load_model_and_tokenizer

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_pie.py"
TINY = ["--preset", "tiny", "--sft_steps", "10", "--rl_steps", "1", "--rl_prompts", "4", "--max_eval", "3",
        "--disable_tqdm", "true"]


def _launch(out: Path, *launch_args: str, extra=(), script=SCRIPT, args=TINY) -> subprocess.CompletedProcess:
    """Run a recipe as its docs say (`accelerate launch`, or plain python without accelerate) into `out`."""
    accelerate = shutil.which("accelerate")
    launcher = [accelerate, "launch", *launch_args, "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd = [*(launcher if accelerate else [sys.executable]), str(script), *args, "--output_dir", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_train_pie_writes_table_plot_and_model(tmp_path):
    out = tmp_path / "run"
    proc = _launch(out, "--num_processes", "1")

    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert list(rows) == ["SFT (stage 1)", "SFT only (same compute)", "SFT + RRHF (1 steps)", "dataset target"]
    for row in rows.values():
        for key in ("percent_optimized", "speedup", "runtime_reduction", "percent_compiled", "percent_passed"):
            assert key in row and f"{key}_ci" in row
        assert row["n_samples"] == 3
    assert rows["dataset target"]["percent_passed"] == 100  # the judge accepts the dataset's own programs
    assert rows["SFT + RRHF (1 steps)"]["energy_kj"] > 0
    table = (out / "results.md").read_text()
    assert "| SFT + RRHF (1 steps) | 3 |" in table and "McNemar" in table and "same wall-clock time" in table
    assert "## Per family" in table
    assert table.strip() in proc.stdout  # printed at the end

    # Paired outcomes per problem, in the same order for every model.
    ids = [o["problem_id"] for o in results["outcomes"]["SFT only (same compute)"]]
    assert len(ids) == 3 and ids == [o["problem_id"] for o in results["outcomes"]["SFT + RRHF (1 steps)"]]
    assert {"pass_p", "opt_p"} <= set(results["paired_tests"])

    for png in ("rl_curves.png", "sft_loss.png"):
        with Image.open(out / png) as img:
            assert img.size[0] > 300 and img.size[1] > 200
    curve = results["rl_curve"]
    assert [h["step"] for h in curve] == [0, 1]  # the start model, then each RL step
    assert {"eval_pass_rate", "eval_compile_rate"} <= set(curve[0])
    assert {"pass_rate", "truncation_rate", "degenerate_rate", "eval_pass_rate"} <= set(curve[1])
    assert results["sft_loss"] and all(h["loss"] > 0 for h in results["sft_loss"])

    assert (out / "final_model" / "model.safetensors").is_file()
    model, tok = load_model_and_tokenizer(out / "final_model")
    assert model.config.is_encoder_decoder and tok.pad_token_id is not None


@pytest.mark.slow
def test_train_pie_with_two_processes_writes_once_and_does_not_hang(tmp_path):
    """Two CPU processes (gloo): one results file, written by the main process, and both ranks finish."""
    out = tmp_path / "run"
    proc = _launch(
        out, "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--main_process_port", "29531",
        extra=["--use_cpu", "true", "--val_size", "2"],
    )
    assert proc.stdout.count("| model | n |") == 1  # the table is printed by one rank only
    results = json.loads((out / "results.json").read_text())
    assert results["rows"]["SFT + RRHF (1 steps)"]["n_samples"] == 3  # both ranks' halves gathered
    assert (out / "final_model" / "model.safetensors").is_file()


def test_rrhf_variant_takes_every_setting_of_the_compare_preset_but_its_own(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import rrhf_variant
    from train_pie import preset_defaults

    monkeypatch.setattr(sys, "argv", ["rrhf_variant.py", "--rl_prompts", "288", "--rl_steps", "1"])
    variant, config = rrhf_variant._parse()
    assert (variant.rl_prompts, variant.rl_steps) == (288, 1)  # given on the command line
    compare = preset_defaults("compare")
    checked = 0
    for key, value in compare.items():
        holder = variant if hasattr(variant, key) else config if hasattr(config, key) else None
        if holder is None or key in ("output_dir", "rl_prompts", "rl_steps"):
            continue  # not a setting of the variant, or one it sets itself
        expected = [] if (key, value) == ("report_to", "none") else value  # TrainingArguments' parsed form
        assert getattr(holder, key) == expected, key
        checked += 1
    assert checked >= 10, checked
