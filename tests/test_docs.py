"""The repository speaks of the package, not of how it was built: no numbered references to a work log (the
tracker's issue numbers, work sessions) in any tracked file, and no machine's absolute paths in result files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Numbered references to a tracker or a log ("issue 18", "issues #3", "session 12") and log words.
WORK_LOG = re.compile(r"\b(?:issue|session|ticket)s?\s*#?\d+|\b(?:this|last|previous|earlier|next) session\b", re.I)
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
    assert WORK_LOG.search("see issue 18's target") and WORK_LOG.search("(Session 14)")
    assert WORK_LOG.search("as in issues #3") and WORK_LOG.search("measured this session")
    assert not WORK_LOG.search("a new session with a scrubbed environment; stage 2; 18 issues found")
    assert MACHINE_PATH.search('{"pie_dir": "/root/shared/pie"}') and not MACHINE_PATH.search('"../shared/pie"')


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
