"""The repository speaks of the package, not of how it was built: no numbered references to a work log (the
tracker's issue numbers, work sessions) in any tracked file, and no machine's absolute paths in result files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Numbered references to a tracker or a log (a tracker word, then a number) and log words.
WORK_LOG = re.compile(
    r"\b(?:issue|session|ticket)s?\s*#?\d+|\b(?:this|last|previous|earlier|next) session\b", re.I
)
# Where a result file records a path of the machine that made it.
MACHINE_PATH = re.compile(r'"(?:/root|/work|/tmp|/home|/Users)/')
SKIP_SUFFIXES = {".png", ".safetensors", ".bin", ".pt", ".arrow", ".gz", ".zip"}


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    files = [ROOT / name for name in out.split("\0") if name]
    # A tokenizer's vocabulary holds words ("session") that are data, not prose.
    return [f for f in files if f.suffix not in SKIP_SUFFIXES and f.name != "tokenizer.json" and f.is_file()]


def test_the_patterns_catch_what_they_are_for():
    # The examples are assembled here so that this file, which the scan reads too, holds none of them.
    issue, session = "iss" + "ue", "Sess" + "ion"
    assert WORK_LOG.search(f"see {issue} 18's target") and WORK_LOG.search(f"({session} 14)")
    assert WORK_LOG.search(f"as in {issue}s #3") and WORK_LOG.search(f"measured this {session.lower()}")
    assert not WORK_LOG.search("a new session with a scrubbed environment; stage 2; 18 issues found")
    assert MACHINE_PATH.search('{"pie_dir": "/root/shared/pie"}') and not MACHINE_PATH.search(
        '"../shared/pie"'
    )


def test_no_tracked_file_refers_to_a_work_log():
    found = []
    for path in _tracked_files():
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if WORK_LOG.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not found, "work-log references in tracked files:\n" + "\n".join(found)


def test_result_files_record_repository_relative_paths():
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in _tracked_files()
        if path.suffix == ".json" and path.relative_to(ROOT).parts[0] in ("docs", "benchmarks")
        for match in [MACHINE_PATH.search(path.read_text(errors="replace"))]
        if match
    ]
    assert not found, "absolute paths of a machine in result files:\n" + "\n".join(found)


def _readme_block(heading: str) -> str:
    """The first python block under `heading` in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_grpo_snippet_runs_as_written(tmp_path):
    """The README's GRPOTrainer snippet, copied as a user would, trains one step and calls the reward."""
    code = _readme_block("## The reward inside TRL's `GRPOTrainer`")
    assert "GRPOTrainer(" in code and "UnitTestRewardFunction()" in code
    # Appended, not edited in: the snippet itself runs unchanged, this only reads what it logged.
    check = "\nimport json\nprint('LOGGED', json.dumps(trainer.state.log_history[0]))\n"
    (tmp_path / "snippet.py").write_text(code + check)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "snippet.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    logged = [line for line in done.stdout.splitlines() if line.startswith("LOGGED ")]
    assert logged, done.stdout[-2000:]
    history = json.loads(logged[0].removeprefix("LOGGED "))
    rewards = [
        v for k, v in history.items() if k.startswith("rewards/unit_test_reward") and k.endswith("/mean")
    ]
    assert rewards and 0.0 <= rewards[0] <= 2.0, history
