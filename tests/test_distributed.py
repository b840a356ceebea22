"""A real 2-process CPU run under `accelerate launch` (gloo): each rank generates and scores its own
candidates, metrics are gathered, a checkpoint is written, and a second launch resumes from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from perfrl_trl.models import create_pretrained

SCRIPT = Path(__file__).parent / "scripts" / "ddp_rrhf.py"


def _launch(*args: str) -> dict:
    accelerate = shutil.which("accelerate")
    cmd = [accelerate] if accelerate else [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate:
        cmd.append("launch")
    # Note: `--cpu --num_processes 2` silently runs one process; --multi_gpu with use_cpu gives two on gloo.
    cmd += [
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        str(SCRIPT),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-3000:]  # printed by rank 0 only
    return json.loads(lines[0][len("RESULT ") :])


@pytest.mark.slow
def test_two_process_cpu_run_checkpoints_and_resumes(tmp_path):
    model = create_pretrained("t5", "tiny", tmp_path / "model")
    out = tmp_path / "out"
    first = _launch(str(model), str(out), "2")
    assert first["world_size"] == 2 and first["step"] == 2
    assert first["eval_n_samples"] == 4  # gathered from both ranks' halves
    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "trainer_state.json").is_file()
    resumed = _launch(str(model), str(out), "3", str(checkpoint))
    assert resumed["step"] == 3
    assert (out / "checkpoint-3" / "model.safetensors").is_file()
