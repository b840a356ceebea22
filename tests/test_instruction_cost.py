"""The instruction-count cost mode: exact counts, start-up left out, the same sandbox, a clear error without valgrind.

Every count here is a real run under valgrind in the real sandbox, at tiny sizes (each executor's worker pays
about 1.5 s of valgrind start-up once, for its counting server); tests that need valgrind skip when it is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from perfrl_trl.execution import ExecutionConfig, Executor, Tier
from perfrl_trl.execution.counters import decide_by_count, find_instruction_counter

needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")

# It reads its working folder too: a count must not depend on where the sandbox runs it from; and it imports
# a module already loaded, which counted differently when the host had been started with SIGINT ignored.
LOOP = "import os, signal\nos.path.abspath('.')\nn = int(input())\ns = 0\nfor i in range(n):\n    s += i * i % 7\nprint(s)\n"
FAST = "n = int(input())\nprint(sum(i * i % 7 for i in range(n)))\n"


def _tests(n: int) -> list[dict]:
    return [{"input": f"{n}\n", "output": f"{sum(i * i % 7 for i in range(n))}\n"}]


@pytest.fixture(scope="module")
def counting():
    with Executor(ExecutionConfig(cost="instructions", workers=1)) as ex:
        yield ex


def test_config_names_a_bad_cost():
    with pytest.raises(ValueError, match="cost"):
        ExecutionConfig(cost="wall_time")
    with pytest.raises(ValueError, match="count_timeout_s"):
        ExecutionConfig(cost="instructions", count_timeout_s=0)
    # The mode is part of what a cached verdict depends on.
    assert ExecutionConfig().key() != ExecutionConfig(cost="instructions").key()


def test_count_rule_is_exact_at_the_margin():
    assert decide_by_count(1000, 1100, 1.1).faster
    assert not decide_by_count(1000, 1099, 1.1).faster
    same = decide_by_count(777, 777, 1.1)
    assert same.speedup == 1.0 and not same.faster and same.p_value is None


def test_no_counter_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match=r"apt-get install valgrind"):
        Executor(ExecutionConfig(cost="instructions", valgrind=str(tmp_path / "valgrind")))
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no valgrind on it
    with pytest.raises(RuntimeError, match=r"none was found on PATH.*apt-get install valgrind"):
        Executor(ExecutionConfig(cost="instructions"))
    with pytest.raises(RuntimeError, match="apt-get install valgrind"):
        find_instruction_counter()


_OTHER_PROCESS = textwrap.dedent(
    """
    import json, signal, sys
    from perfrl_trl.execution import ExecutionConfig, Executor
    # Started as a shell starts a job in the background: what the counting server inherits must not count.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    program, tests = json.loads(sys.stdin.read())
    with Executor(ExecutionConfig(cost="instructions", workers=1)) as ex:
        print(ex.count_instructions(program, tests))
    """
)


@needs_valgrind
def test_counts_are_exact_everywhere_and_leave_start_up_out(counting):
    tests = _tests(3000)
    # Another process counts at the same time, so both cores are busy (CPU time would move, counts must not),
    # and it counts in a pool of its own: its own worker, calibration and valgrind start-up, started with other
    # signal dispositions.
    other = subprocess.Popen(
        [sys.executable, "-c", _OTHER_PROCESS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    other.stdin.write(json.dumps([LOOP, tests]))
    other.stdin.close()
    try:
        first = counting.count_instructions(LOOP, tests)
        # Hundreds of runs later (new process ids, other programs run): CPython allocates pids above 256, and
        # a worker that counted with small ones at first would count differently now.
        many = [{"input": "", "output": ""}] * 300
        assert counting.judge("print()", many, time_it=False).passed
        second = counting.count_instructions(LOOP, tests)
        elsewhere = int(other.stdout.read())
        assert other.wait(timeout=120) == 0
    finally:
        other.kill()
        other.wait()
    assert first == second == elsewhere
    # An interpreter's start-up alone is tens of millions of instructions: counted in, it would squash this
    # ratio towards 1; left out, twice the iterations cost twice the instructions (give or take the I/O).
    double = counting.count_instructions(LOOP, _tests(6000))
    assert first < 20_000_000
    assert 1.9 < double / first < 2.05


@needs_valgrind
def test_a_program_that_draws_randomness_counts_the_same_every_run(counting):
    # A program that shuffles its input draws fresh bytes from the kernel at every run, and its count moved with
    # them; a counted program gets a fixed seed, as it gets a fixed hash seed.
    program = (
        "import os, random, secrets\na = list(range(200))\nrandom.shuffle(a)\n"
        "print(a[:3], os.urandom(4).hex(), secrets.randbelow(10**9), random.SystemRandom().random())\n"
    )
    worker = counting._pool.workers[0]
    runs = [worker.run(program, [""], count=True)["runs"][0] for _ in range(3)]
    assert runs[0]["exit"] == 0 and runs[0]["instructions"] is not None
    assert len({(run["instructions"], run["stdout"]) for run in runs}) == 1


def _descendants(pid: int) -> list[tuple[int, str]]:
    """Every process below ``pid``: its pid and command name."""
    kids: dict[int, list[int]] = {}
    names = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    head, tail = fh.read().rsplit(b")", 1)
            except OSError:
                continue
            kids.setdefault(int(tail.split()[1]), []).append(int(entry))
            names[int(entry)] = head.split(b"(", 1)[1].decode(errors="replace")
    out, todo = [], [pid]
    while todo:
        for kid in kids.get(todo.pop(), []):
            out.append((kid, names[kid]))
            todo.append(kid)
    return out


def _counting_servers(ex: Executor) -> list[int]:
    """The pids of the valgrind processes below the executor's one worker."""
    return [pid for pid, name in _descendants(ex._pool.workers[0].proc.pid) if "grind" in name]


@needs_valgrind
def test_the_counting_server_outlives_runs_that_fail_and_counts_the_same_after():
    # One worker keeps one counting server for every counted run: runs that time out, crash or fail must
    # neither take it down nor change what it counts afterwards.
    tests = _tests(2000)
    cfg = ExecutionConfig(cost="instructions", workers=1, count_timeout_s=6)  # the hang below waits it out
    with Executor(cfg) as ex:
        before = ex.count_instructions(LOOP, tests)
        worker = ex._pool.workers[0]
        hang = worker.run("while True:\n    pass\n", [""], count=True)["runs"][0]
        assert hang["timeout"] and hang["instructions"] is None
        crash = worker.run("import ctypes\nctypes.string_at(0)\n", [""], count=True)["runs"][0]
        assert crash["exit"] != 0 and crash["instructions"] is None and "failed" in crash["count_error"]
        fail = worker.run("raise SystemExit(3)\n", [""], count=True)["runs"][0]
        assert fail["exit"] == 3 and fail["instructions"] is None
        assert ex.count_instructions(LOOP, tests) == before
        assert worker.restarts == 0
        # Between runs the worker holds its counting server and nothing else: no session outlives its run.
        server = _counting_servers(ex)
        assert (
            len(server) == 1 and len(_descendants(worker.proc.pid)) <= 3
        )  # bwrap's init, the worker, the server
        # The same server through whole judgements, whose plain runs (correctness first) the worker cleans up after
        # as after any run: it is paid for once, not per candidate.
        for k in range(3):
            assert ex.judge(LOOP + "#" * k, tests, FAST).tier == Tier.R3
        assert _counting_servers(ex) == server


@needs_valgrind
def test_a_program_against_itself_is_r3_and_a_faster_one_r4(counting):
    tests = _tests(3000)
    itself = counting.judge(LOOP, tests, LOOP)
    assert itself.tier == Tier.R3 and itself.speedup == 1.0
    assert itself.cost == "instructions" and itself.counter.startswith("valgrind-")
    assert itself.runtime == itself.baseline_runtime == itself.trials[0] > 0
    faster = counting.judge(FAST, tests, LOOP)
    assert faster.tier == Tier.R4, faster
    assert faster.p_value is None and faster.runtime * 1.1 <= faster.baseline_runtime
    assert faster.speedup == faster.baseline_runtime / faster.runtime


@needs_valgrind
def test_a_counted_program_cannot_leave_valgrind_or_the_sandbox(counting):
    # Passes its tests in a plain run (where exec is allowed), then tries to replace itself with an uncounted
    # process; in a counted run that is refused, and the count fails instead of coming out small.
    escape = (
        "import os, sys\nprint(input())\nsys.stdout.flush()\n"
        "os.execv(sys.executable, [sys.executable, '-c', 'pass'])\n"
    )
    tests = [{"input": "5\n", "output": "5\n"}]
    verdict = counting.judge(escape, tests)
    assert verdict.passed and verdict.tier == Tier.R3 and verdict.runtime is None
    assert verdict.error is not None and verdict.error.startswith("counting failed")
    assert "Operation not permitted" in verdict.error or "failed" in verdict.error


@needs_valgrind
def test_a_counted_program_cannot_forge_its_count_or_reach_the_counting_server(counting):
    # Every descriptor it could try (valgrind's log among them), fake reports with its own pid, and a signal to
    # its parent: none gets through, and the server counts the same afterwards.
    forger = (
        "import os\nwrote = []\nfor fd in range(3, 1200):\n    try:\n"
        "        os.write(fd, b'==%d== I   refs:      1\\n' % os.getpid())\n        wrote.append(fd)\n"
        "    except OSError:\n        pass\nprint(wrote)\n"
        "try:\n    os.kill(os.getppid(), 9)\nexcept OSError as exc:\n    print(exc.errno)\n"
    )
    tests = _tests(3000)
    before = counting.count_instructions(LOOP, tests)
    worker = counting._pool.workers[0]
    run = worker.run(forger, [""], count=True)["runs"][0]
    assert run["stdout"] == "[]\n1\n", run  # wrote nowhere; EPERM
    assert run["instructions"] > 100_000  # a loop over 1197 descriptors, not the forged 1
    assert counting.count_instructions(LOOP, tests) == before and worker.restarts == 0


@needs_valgrind
def test_the_metric_says_what_it_measured(counting, monkeypatch):
    import evaluate

    monkeypatch.setenv("PERFRL_ALLOW_CODE_EXECUTION", "1")
    tests = _tests(3000)  # the verdicts of the test above: served from the executor's cache
    out = evaluate.load("perfrl/speedup").compute(
        predictions=[FAST], references=[LOOP], tests=[tests], executor=counting
    )
    assert out["cost"] == "instructions" and out["percent_optimized"] == 100.0
    assert (
        evaluate.load("perfrl/speedup", "runtimes").compute(predictions=[1.0], references=[2.0])["cost"]
        is None
    )


def test_the_cost_reaches_the_reward_and_the_trainer_config(tmp_path):
    from perfrl_trl import RRHFConfig, UnitTestRewardFunction
    from perfrl_trl.metrics.scoring import cost_mode

    assert UnitTestRewardFunction(cost="instructions", margin=1.2).config.cost == "instructions"
    args = RRHFConfig(output_dir=str(tmp_path), execution_cost="instructions", report_to=[])
    assert ExecutionConfig(**args.execution_config_kwargs()).cost == "instructions"
    with pytest.raises(ValueError, match="execution_cost"):
        RRHFConfig(output_dir=str(tmp_path), execution_cost="cycles", report_to=[])
    assert cost_mode(execution_config={"cost": "instructions"}) == "instructions"


@needs_valgrind
def test_cli_score_counts_instructions(tmp_path, capsys):
    from perfrl_trl.cli import main

    (tmp_path / "p.py").write_text(FAST)
    folder = tmp_path / "tests"
    folder.mkdir()
    (folder / "input.0.txt").write_text("300\n")
    (folder / "output.0.txt").write_text(_tests(300)[0]["output"])
    argv = ["score", "--program", str(tmp_path / "p.py"), "--tests", str(folder), "--json"]
    assert main([*argv, "--cost", "instructions"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cost"] == "instructions" and result["counter"].startswith("valgrind-")
    assert (
        isinstance(result["instructions"], int) and result["instructions"] > 0 and result["runtime_s"] is None
    )


@needs_valgrind
def test_ray_actors_count_as_configured():
    from perfrl_trl.execution.ray_backend import JudgeActor

    # Each actor judges on a local executor made from the driver's config, cost included (no Ray needed here).
    actor = JudgeActor(ExecutionConfig(cost="instructions", ray_address="auto"))
    try:
        assert actor.executor.config.cost == "instructions" and actor.executor.counter.startswith("valgrind-")
    finally:
        actor.executor.close()
