"""`perfrl-trl` start-up: the commands that never touch a model must not import torch or transformers.

Each command runs in a fresh interpreter (this test process has torch loaded already), and the interpreter
reports which heavy modules ended up in `sys.modules`.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perfrl_trl.execution import resolve_isolation

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "examples" / "programs"
HEAVY = ("torch", "transformers", "datasets")

_RUN_MAIN = """
import json, sys
from perfrl_trl.cli import main
try:
    status = main(sys.argv[2:])
except SystemExit as exc:
    status = exc.code
loaded = [name for name in {heavy!r} if name in sys.modules]
with open(sys.argv[1], "w") as fh:
    json.dump({{"status": status, "loaded": loaded}}, fh)
"""


def run_cli(tmp_path: Path, *argv: str) -> tuple[dict, subprocess.CompletedProcess]:
    report = tmp_path / "report.json"
    # A private evaluate module cache: `register-metrics` (and `import perfrl_trl`) write into it.
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_MAIN.format(heavy=HEAVY), str(report), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(report.read_text()), proc


def sandbox_problem() -> str | None:
    try:
        resolve_isolation("auto")
    except RuntimeError as exc:
        return str(exc)
    return None


def test_sandbox_info_does_not_import_torch(tmp_path):
    report, proc = run_cli(tmp_path, "sandbox-info")
    assert report == {"status": 0, "loaded": []}
    assert "isolation" in json.loads(proc.stdout)


def test_register_metrics_does_not_import_torch(tmp_path):
    report, proc = run_cli(tmp_path, "register-metrics", "--force")
    assert report == {"status": 0, "loaded": []}
    assert "registered perfrl/speedup at" in proc.stdout
    assert any((tmp_path / "modules").rglob("speedup.py"))


def test_score_does_not_import_torch(tmp_path):
    argv = ["score", "--program", str(PROGRAMS / "fast.py"), "--baseline", str(PROGRAMS / "slow.py")]
    report, proc = run_cli(tmp_path, *argv, "--tests", str(PROGRAMS / "tests"), "--trials", "3", "--json")
    assert report["loaded"] == []
    problem = sandbox_problem()
    if problem is None:
        # The whole command ran, sandboxed programs included, still without the heavy modules.
        assert report["status"] == 0
        assert json.loads(proc.stdout)["tests_passed"] == 2
    else:
        # No sandbox here: the command stops after building the reward, which is where imports happen.
        assert report["status"] == f"perfrl-trl: {problem}"


def test_help_and_optimize_parser_do_not_import_torch(tmp_path):
    # Building the parser registers `optimize` too; its model code must load only when it runs.
    report, proc = run_cli(tmp_path, "optimize", "--help")
    assert report == {"status": 0, "loaded": []}
    assert "--num-samples" in proc.stdout


@pytest.mark.parametrize("module", ["cli_optimize.py", "_cli_common.py"])
def test_cli_imports_point_one_way(module):
    """`cli` imports `cli_optimize` and `_cli_common`; neither may import `cli` back, at any level."""
    tree = ast.parse((ROOT / "perfrl_trl" / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
            if node.module is None:
                imported.update("." + alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not imported & {".cli", "perfrl_trl.cli"}, imported
