"""The executor on hostile programs: each is contained, scored R1/R2, and leaves nothing behind.

Everything here runs the real sandbox (bubblewrap when available, and the rlimits fallback).
"""

from __future__ import annotations

import os
import secrets
import socket
import textwrap
import time

import pytest

from perfrl_trl.execution import ExecutionConfig, Executor, bwrap_available, compare_outputs
from perfrl_trl.execution.sandbox import drop_uid_for_rlimits, rlimits_available

SECRET = "perfrl-secret-" + secrets.token_hex(8)
LEVELS = [
    pytest.param("bwrap", marks=pytest.mark.skipif(not bwrap_available(), reason="bubblewrap unavailable")),
    pytest.param(
        "rlimits",
        marks=pytest.mark.skipif(
            not rlimits_available(), reason="rlimits level refuses root when runs cannot drop to uid 65534"
        ),
    ),
]


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(entry))
    return kids


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _cmdlines() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    found.append(fh.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module", params=LEVELS)
def executor(request):
    # Set before the workers start: the sandbox must not pass it on.
    os.environ["PERFRL_TEST_SECRET"] = SECRET
    cfg = ExecutionConfig(timeout_s=1.5, n_trials=3, memory_mb=512, workers=2, isolation=request.param)
    with Executor(cfg) as ex:
        yield ex
    os.environ.pop("PERFRL_TEST_SECRET", None)


GOOD = "print(int(input()) * 2)"
GOOD_TESTS = [{"input": "21\n", "output": "42\n"}]


def assert_contained(ex: Executor, program: str, tests=GOOD_TESTS, statuses=None) -> None:
    start = time.monotonic()
    verdict = ex.judge(textwrap.dedent(program), tests, time_it=False)
    assert verdict.tier in (1, 2), verdict
    if statuses is not None:
        assert verdict.status in statuses, verdict
    # Generous bound: the wall timeout plus worker restart; a hang here would be a containment bug.
    assert time.monotonic() - start < 30
    # The caller is alive and the executor still works.
    assert ex.judge(GOOD, GOOD_TESTS, time_it=False).tier == 3
    # Nothing left behind: each worker is back to its own few processes (bwrap, its init, python).
    for worker in ex._pool.workers:
        if worker.proc is not None:
            assert len(_tree(worker.proc.pid)) <= 2, _tree(worker.proc.pid)


def test_isolation_level_is_reported(executor):
    assert executor.isolation in ("bwrap", "rlimits")
    assert executor.judge(GOOD, GOOD_TESTS, time_it=False).isolation == executor.isolation


def test_infinite_loop(executor):
    assert_contained(executor, "while True:\n    pass\n", statuses={"timeout"})


def test_long_sleep(executor):
    assert_contained(executor, "import time\ntime.sleep(1000)\n", statuses={"timeout"})


def test_memory_bomb(executor):
    assert_contained(executor, "x = bytearray(8 << 30)\n", statuses={"memory_limit"})
    assert_contained(executor, "chunks = []\nwhile True:\n    chunks.append(bytearray(50 << 20))\n")


def test_fork_bomb(executor):
    assert_contained(
        executor,
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
    )


def test_thread_bomb(executor):
    assert_contained(
        executor,
        """
        import threading, time
        while True:
            threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()
        """,
    )


def test_endless_output(executor):
    assert_contained(executor, "while True:\n    print('x' * 4096)\n", statuses={"output_limit"})
    assert_contained(executor, "import sys\nwhile True:\n    sys.stderr.write('e' * 4096)\n")


def test_fill_disk(executor):
    assert_contained(
        executor,
        """
        i = 0
        while True:
            with open(f"fill{i}", "wb") as fh:
                fh.write(b"x" * (8 << 20))
            i += 1
        """,
    )


def _written(ex: Executor, paths: list[str]) -> list[str]:
    """The paths a run managed to create (the program reports each write that succeeded)."""
    program = f"""
    for path in {paths!r}:
        try:
            with open(path, "w") as fh:
                fh.write("x")
            print(path)
        except OSError:
            pass
    """
    reply = ex._run(textwrap.dedent(program), [""], repeats=1)
    return reply["runs"][0]["stdout"].split()


def test_write_outside_its_directory(executor, tmp_path):
    # Folders no run may write to at either level: system folders, and at the rlimits level with uid 65534
    # the worker's own folder (at the bwrap level that is the private /tmp, wiped after each run).
    forbidden = ["/root/pwned", "/usr/pwned", "/pwned", "/etc/pwned"]
    if executor.isolation == "rlimits" and drop_uid_for_rlimits() is not None:
        forbidden.append("../pwned")
    assert _written(executor, forbidden) == []
    for path in ("/root/pwned", "/usr/pwned", "/pwned", "/etc/pwned"):
        assert not os.path.exists(path), path


def test_write_to_a_world_writable_folder(executor, tmp_path):
    if executor.isolation != "bwrap":
        pytest.skip(
            "the rlimits level does not hide the filesystem: a run can write to world-writable folders "
            "(and, with the caller's uid, wherever the caller can); documented gap, bubblewrap closes it"
        )
    tmp_path.chmod(0o777)
    target = tmp_path / "pwned.txt"
    assert _written(executor, [str(target)]) == []
    assert not target.exists()


def _needs_secrecy(executor):
    # The rlimits level hides nothing of the filesystem or /proc from a run with the caller's uid
    # (documented); it can only when it drops runs to another uid.
    if executor.isolation == "rlimits" and drop_uid_for_rlimits() is None:
        pytest.skip("rlimits level running with the caller's uid does not hide files or /proc (documented)")


def test_cannot_read_caller_secrets(executor):
    _needs_secrecy(executor)
    program = """
    import os, glob
    found = [v for v in os.environ.values() if "perfrl-secret" in v]
    for path in glob.glob("/proc/*/environ"):
        try:
            data = open(path, "rb").read().decode(errors="replace")
        except OSError:
            continue
        found += [p for p in data.split("\\0") if "perfrl-secret" in p]
    print(found[0].split("=")[-1] if found else "nothing")
    """
    assert_contained(executor, program, tests=[{"input": "", "output": SECRET}], statuses={"wrong_answer"})


@pytest.mark.skipif(not bwrap_available(), reason="network isolation needs bubblewrap")
def test_no_network(executor):
    if executor.isolation != "bwrap":
        pytest.skip("the rlimits level does not cut the network (documented)")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        assert_contained(
            executor,
            f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
            s.sendall(b"hello")
            print("connected")
            """,
            tests=[{"input": "", "output": "connected"}],
        )
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()


def test_kill_parent_and_group(executor):
    assert_contained(executor, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    assert_contained(executor, "import os, signal\nos.killpg(0, signal.SIGKILL)\n")
    assert_contained(executor, "import os, signal\nos.kill(-1, signal.SIGKILL)\n")


def test_exit_before_printing(executor):
    assert_contained(executor, "import os\nos._exit(0)\nprint(42)\n", statuses={"wrong_answer"})


def test_right_answer_then_hang(executor):
    assert_contained(
        executor, "import sys, time\nprint(42)\nsys.stdout.flush()\ntime.sleep(1000)\n", statuses={"timeout"}
    )


def test_detached_daemon_does_not_outlive_the_run(executor):
    marker = f"{secrets.randbelow(10**6) + 10**6}.{secrets.randbelow(999)}"
    program = f"""
    import os, sys
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for fd in (0, 1, 2):
                os.close(fd)
            os.execv("/bin/sleep", ["sleep", "{marker}"])
        os._exit(0)
    print(42)
    """
    verdict = executor.judge(textwrap.dedent(program), GOOD_TESTS, time_it=False)
    assert verdict.tier in (2, 3)  # printing 42 is the right answer; what matters is the daemon
    time.sleep(0.2)
    assert not [c for c in _cmdlines() if marker in c]


def test_sigterm_handler_cannot_survive(executor):
    program = """
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        pass
    """
    assert_contained(executor, program, statuses={"timeout"})


def test_segfault_through_ctypes(executor):
    assert_contained(executor, "import ctypes\nctypes.string_at(0)\n", statuses={"runtime_error"})


def test_hunting_for_expected_outputs(executor):
    if executor.isolation != "bwrap":
        pytest.skip("only bubblewrap hides the filesystem; outputs never enter the sandbox at any level")
    expected = "answer-" + secrets.token_hex(8)
    program = """
    import gc, os, sys
    found = set()
    # The interpreter's own folders hold no answers, and walking a large virtual environment would
    # only run into the timeout.
    interpreter = tuple(p + "/" for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})
    for obj in gc.get_objects():
        for item in (obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()):
            if isinstance(item, (str, bytes)) and (b"answer-" if isinstance(item, bytes) else "answer-") in item:
                found.add(item if isinstance(item, str) else item.decode(errors="replace"))
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        for name in ("cmdline", "environ"):
            try:
                data = open(f"/proc/{pid}/{name}", "rb").read().decode(errors="replace")
            except OSError:
                continue
            found.update(p for p in data.replace("\\0", " ").split() if p.startswith("answer-"))
    try:
        data = open(f"/proc/{os.getppid()}/mem", "rb").read(1 << 20)
    except OSError:
        data = b""
    for root in ("/tmp", "/dev/shm", "/"):
        for dirpath, dirnames, filenames in os.walk(root):
            skip = dirpath.startswith(("/proc", "/sys", "/usr", "/root", "/lib", "/bin")) or dirpath == "/dev"
            if skip or (dirpath + "/").startswith(interpreter):
                dirnames[:] = []
                continue
            for name in filenames:
                try:
                    text = open(os.path.join(dirpath, name), errors="replace").read(1 << 16)
                except OSError:
                    continue
                found.update(w for w in text.split() if w.startswith("answer-"))
    print(sorted(found)[0] if found else "nothing")
    """
    tests = [{"input": "no clue here\n", "output": expected}]
    assert_contained(executor, program, tests=tests, statuses={"wrong_answer"})


@pytest.mark.parametrize("place", ["cwd", "parent", "tmp", "shm"])
def test_state_does_not_persist_between_runs(executor, place):
    # A program that caches its answer on disk would look faster on later trials.
    if executor.isolation == "rlimits" and place in ("tmp", "shm"):
        pytest.skip(
            "the rlimits level cannot wipe the host's shared /tmp and /dev/shm between runs (other "
            "processes use them too); documented gap, bubblewrap gives each worker private ones"
        )
    name = "cache-" + secrets.token_hex(6)
    path = {"cwd": name, "parent": f"../{name}", "tmp": f"/tmp/{name}", "shm": f"/dev/shm/{name}"}[place]
    program = f"""
    import os
    if os.path.exists({path!r}):
        print("cached")
    else:
        try:
            with open({path!r}, "w") as fh:
                fh.write("1")
            print("fresh")
        except OSError:
            print("unwritable")
    """
    reply = executor._run(textwrap.dedent(program), [""], repeats=3)
    outs = [r["stdout"].strip() for r in reply["runs"]]
    # Only the worker's folder under rlimits with uid 65534 is closed to runs; everywhere else they write.
    closed = place == "parent" and executor.isolation == "rlimits" and drop_uid_for_rlimits() is not None
    assert outs == ["unwritable" if closed else "fresh"] * 3, outs


# -- correctness of comparison and timing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "expected", "ok"),
    [
        ("42\n", "42", True),
        ("  42  \n\n", "42", True),
        ("1 2 3\n", "1 2 3\n", True),
        ("1 2\n", "1 3\n", False),
        ("3.14159", "3.1416", True),
        ("3.14", "3.1416", False),
        ("1e-4", "0.0", True),
        ("nan", "nan", True),  # identical tokens match as strings
        ("inf", "1e308", False),
        ("a\nb", "a b", False),
        ("yes", "Yes", False),
        ("1\r\n2\r\n", "1\n2\n", True),
    ],
)
def test_compare_outputs(actual, expected, ok):
    assert compare_outputs(actual, expected) is ok


def test_float_tolerance_is_configurable():
    assert compare_outputs("1.05", "1.0", float_tol=0.1)
    assert not compare_outputs("1.05", "1.0", float_tol=0.01)


def test_correct_wrong_and_float_outputs(executor):
    tests = [{"input": "2\n", "output": "0.6667\n"}, {"input": "4\n", "output": "1.3333\n"}]
    assert executor.judge("print(int(input()) / 3)", tests, time_it=False).status == "passed"
    assert executor.judge("print(int(input()) / 3 + 0.01)", tests, time_it=False).status == "wrong_answer"
    verdict = executor.judge("print(1/0)", tests, time_it=False)
    assert verdict.status == "runtime_error" and "ZeroDivisionError" in verdict.error


def test_stdin_styles_and_exit_codes(executor):
    tests = [{"input": "3\n1 2 3\n", "output": "6\n"}]
    for program in (
        "input()\nprint(sum(map(int, input().split())))",
        "import sys\nsys.stdin.readline()\nprint(sum(map(int, sys.stdin.readline().split())))",
        "import sys\nd = sys.stdin.buffer.read().split()\nprint(sum(map(int, d[1:])))",
        "d = open(0).read().split()\nprint(sum(map(int, d[1:])))",
        "import sys\nprint(6)\nsys.exit(0)",
        "def main():\n    input()\n    print(sum(map(int, input().split())))\nif __name__ == '__main__':\n    main()",
    ):
        assert executor.judge(program, tests, time_it=False).status == "passed", program
    assert executor.judge("import sys\nprint(6)\nsys.exit(1)", tests, time_it=False).status == "runtime_error"


def test_faster_program_is_detected_and_identical_is_not(executor):
    tests = [{"input": "400000\n", "output": f"{sum(range(400001))}\n"}]
    slow = "n = int(input())\ns = 0\nfor i in range(n + 1):\n    s += i\nprint(s)\n"
    fast = "n = int(input())\nprint(n * (n + 1) // 2)\n"
    verdict = executor.judge(fast, tests, baseline=slow)
    assert verdict.tier == 4 and verdict.speedup > 5, verdict
    same = executor.judge(slow + "\n", tests, baseline=slow)
    assert same.tier == 3 and not same.faster, same
    assert executor.judge(fast, tests, baseline=slow) is verdict  # served from the cache


def test_bad_tests_get_clear_errors(executor):
    with pytest.raises(ValueError, match="empty"):
        executor.judge(GOOD, [])
    with pytest.raises(ValueError, match=r"tests\[1\]"):
        executor.judge(GOOD, [GOOD_TESTS[0], {"input": "1"}])
    with pytest.raises(ValueError, match=r"jobs\[0\]\.tests\[0\]\['output'\]"):
        executor.judge_many([(GOOD, [{"input": "1", "output": 2}], None)])
    with pytest.raises(ValueError, match="margin"):
        ExecutionConfig(margin=0.5)


def test_caller_survives_a_dead_worker(executor):
    # Whatever kills a worker mid-run (the OOM killer, a bug), that run is a failure and the next call works.
    executor.judge(GOOD, GOOD_TESTS, time_it=False)
    future = executor.submit("import time\ntime.sleep(1.2)\nprint(42)", GOOD_TESTS, time_it=False)
    time.sleep(0.4)
    for w in executor._pool.workers:
        if w.proc is not None:
            os.killpg(w.proc.pid, 9)
    verdict = future.result(timeout=30)
    assert verdict.status == "sandbox_error" and verdict.tier == 2, verdict
    assert executor.judge(GOOD, GOOD_TESTS, time_it=False).tier == 3
    assert sum(w.restarts for w in executor._pool.workers) >= 1


def test_workers_share_one_calibration(executor):
    # Start both workers and restart one: every run must lose the same empty-run cost, or a candidate and
    # a baseline timed on different workers would differ by calibration noise alone.
    slow = "import time\ntime.sleep(0.3)\nprint(42)"
    futures = [executor.submit(slow + "\n" * i, GOOD_TESTS, time_it=False) for i in range(2)]
    assert all(f.result(timeout=30).tier == 3 for f in futures)
    workers = executor._pool.workers
    assert all(w.proc is not None for w in workers)
    os.killpg(workers[0].proc.pid, 9)
    workers[0].close()
    assert executor.judge(GOOD + "\n", GOOD_TESTS, time_it=False).tier == 3
    assert executor.judge(GOOD + "\n\n", GOOD_TESTS, time_it=False).tier == 3
    overheads = {w.overhead_cpu for w in workers}
    assert len(overheads) == 1 and 0 < overheads.pop() < 0.05, [w.overhead_cpu for w in workers]


def test_runs_never_run_as_root(executor):
    # A root caller's runs drop to uid 65534 at both levels, and can still import any standard module
    # (at the rlimits level through the worker's descriptors when the interpreter sits under /root).
    program = "import os, fractions, decimal, email.mime.text\nprint(os.getuid(), os.geteuid(), fractions.Fraction(2, 6))"
    reply = executor._run(program, [""], repeats=2)
    expected = "65534 65534 1/3" if os.geteuid() == 0 or executor.isolation == "bwrap" else None
    for run in reply["runs"]:
        assert run["exit"] == 0, run["stderr"]
        if expected is None:
            assert run["stdout"].split()[:2] == [str(os.getuid()), str(os.geteuid())]
            assert run["stdout"].split()[2] == "1/3"
        else:
            assert run["stdout"].strip() == expected


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="runs as root only: a non-root caller's runs keep its own uid, so the rlimits level never refuses it",
)
def test_rlimits_level_refuses_root(monkeypatch, tmp_path):
    """As root, when uid 65534 cannot read one of the interpreter's folders, the rlimits level refuses."""
    from perfrl_trl.execution import resolve_isolation, sandbox

    # A private folder stands in for one of the interpreter's (as under a private /root): the real check
    # then finds that runs cannot drop to uid 65534.
    here = drop_uid_for_rlimits()  # this host's own answer, from its real folders
    private = tmp_path / "site-packages"
    private.mkdir()
    private.chmod(0o700)
    monkeypatch.setattr(sandbox, "_runtime_dirs", lambda: [str(private)])
    assert drop_uid_for_rlimits() is None and not rlimits_available()
    with pytest.raises(RuntimeError, match="refuses to run untrusted programs as root"):
        resolve_isolation("rlimits")
    if here is not None:
        # The folder made readable by others, runs drop to 65534 again and the level is allowed.
        private.chmod(0o755)
        assert drop_uid_for_rlimits() == here and resolve_isolation("rlimits") == "rlimits"


def test_a_failing_baseline_measurement_never_hangs_other_callers(executor, monkeypatch):
    import threading

    calls = []

    def broken_check(code, tests):
        calls.append(code)
        raise RuntimeError("boom")

    monkeypatch.setattr(executor, "_check", broken_check)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(_try(executor._baseline, "print(1)", GOOD_TESTS)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads), "a waiter hung on a failed baseline"
    assert all(isinstance(r, RuntimeError) for r in results) and len(results) == 3


def _try(func, *args):
    try:
        return func(*args)
    except Exception as exc:
        return exc


def test_baseline_cache_is_bounded():
    cfg = ExecutionConfig(timeout_s=2, n_trials=3, workers=1, cache_size=2)
    fast = "print(int(input()) * 2)"
    with Executor(cfg) as ex:
        for i in range(4):
            slow = f"x = {i}\n" + fast
            verdict = ex.judge(fast, GOOD_TESTS, baseline=slow)
            # The same sub-millisecond program: usually R3, but with 3 trials a side complete separation
            # by noise (p = 0.05) can call it faster now and then; the cache is what is tested here.
            assert verdict.passed and verdict.baseline_status == "passed", verdict
            assert len(ex._baselines) <= 2
        assert ex.judge(fast, GOOD_TESTS, baseline="x = 0\n" + fast).baseline_status == "passed"  # re-timed


def test_ranks_on_one_machine_divide_its_cores(monkeypatch):
    # Each rank of `accelerate launch` builds its own executor: with the machine's every core per rank, P ranks
    # started P times too many workers, all timing programs on the same cores.
    from perfrl_trl.execution.cores import usable_cores

    cores = usable_cores()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert ExecutionConfig().num_workers == cores
    assert ExecutionConfig(workers=3).num_workers == 3  # an explicit count always wins
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores * 2))
    assert ExecutionConfig().num_workers == 1  # more ranks than cores: one each, never none
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))
    executor = Executor(ExecutionConfig())
    try:
        assert executor.judge(GOOD, GOOD_TESTS, time_it=False).tier == 3
        assert len(executor._pool.workers) == 1
    finally:
        executor.close()
