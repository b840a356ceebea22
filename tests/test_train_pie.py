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


@pytest.mark.slow
def test_train_pie_writes_table_plot_and_model(tmp_path):
    out = tmp_path / "run"
    launcher = [shutil.which("accelerate"), "launch", "--num_processes", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no"] if shutil.which("accelerate") else [sys.executable]
    cmd = [*launcher, str(SCRIPT), "--preset", "tiny", "--output_dir", str(out), "--sft_steps", "10",
           "--rl_steps", "1", "--rl_prompts", "4", "--max_eval", "3", "--disable_tqdm", "true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert list(rows) == ["before fine-tuning", "SFT only (same compute)", "SFT + RRHF (1 steps)"]
    for row in rows.values():
        for key in ("percent_optimized", "speedup", "runtime_reduction", "percent_compiled", "percent_passed"):
            assert key in row and f"{key}_ci" in row
        assert row["n_samples"] == 3
    assert rows["SFT + RRHF (1 steps)"]["energy_kj"] >= 0
    table = (out / "results.md").read_text()
    assert "| SFT + RRHF (1 steps) | 3 |" in table and "McNemar" in table and "same wall-clock time" in table
    assert table in proc.stdout or table.strip() in proc.stdout  # printed at the end

    for png in ("rl_curves.png", "sft_loss.png"):
        with Image.open(out / png) as img:
            assert img.size[0] > 300 and img.size[1] > 200
    curve = results["rl_curve"]
    assert [h["step"] for h in curve] == [0, 1]  # the SFT checkpoint, then each RL step
    assert {"eval_pass_rate", "eval_compile_rate"} <= set(curve[0])
    assert {"pass_rate", "eval_pass_rate", "eval_compile_rate"} <= set(curve[1])
    assert results["sft_loss"] and all(h["loss"] > 0 for h in results["sft_loss"])

    assert (out / "final_model" / "model.safetensors").is_file()
    model, tok = load_model_and_tokenizer(out / "final_model")
    assert model.config.is_encoder_decoder and tok.pad_token_id is not None
