"""The executor's Ray backend on a real cluster that these tests start: two nodes on this machine (127.0.0.1
only), one CPU each, shared by every test here (one module-scoped fixture).

They skip, saying why, only where Ray is not installed or its cluster cannot start.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

from perfrl_trl.execution import ExecutionConfig, Executor, Tier

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "examples" / "programs"
# Loopback only: Ray otherwise binds the machine's address. No usage report leaves the machine.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}

SLOW = "n = int(input())\ns = 0\nfor i in range(n + 1):\n    s += i\nprint(s)\n"
FAST = "n = int(input())\nprint(n * (n + 1) // 2)\n"
TESTS = [{"input": f"{n}\n", "output": f"{n * (n + 1) // 2}\n"} for n in (300000, 200000)]
GOOD = "print(int(input()) * 2)"
GOOD_TESTS = [{"input": "21\n", "output": "42\n"}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drop_shared_ray_executors() -> None:
    """Close the RayExecutors that get_executor made (the trainer's), so their actors give the CPUs back."""
    from perfrl_trl.execution import shared
    from perfrl_trl.execution.ray_backend import RayExecutor

    with shared._shared_lock:
        found = [(k, ex) for k, ex in shared._shared.items() if isinstance(ex, RayExecutor)]
        for key, _ in found:
            del shared._shared[key]
    for _, ex in found:
        ex.close()


@pytest.fixture(scope="module")
def cluster():
    if find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'perfrl_trl[ray]')")
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    enable = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # read when called; the variable, only when ray is imported
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80 << 20}
    started = None
    try:
        started = Cluster(
            initialize_head=True,
            head_node_args={
                **node,
                "include_dashboard": False,
                "dashboard_port": _free_port(),
                "dashboard_agent_listen_port": _free_port(),
            },
        )
        started.add_node(**node)
        started.wait_for_nodes()
        ray.init(address=started.address, log_to_driver=False)
    except Exception as exc:  # the one reason to skip: no Ray cluster can run here
        if started is not None:
            started.shutdown()
        pytest.skip(f"a local Ray cluster cannot start here: {type(exc).__name__}: {exc}")
    try:
        yield started
    finally:
        _drop_shared_ray_executors()
        ray.shutdown()
        started.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = enable
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _ray_config(cluster, **kw) -> ExecutionConfig:
    base = {"timeout_s": 2.0, "n_trials": 3, "workers": 2, "ray_address": cluster.address}
    return ExecutionConfig(**{**base, **kw})


def test_ray_is_imported_only_when_asked_for():
    code = textwrap.dedent(
        """
        import sys
        import perfrl_trl, perfrl_trl.cli, perfrl_trl.execution, perfrl_trl.metrics, perfrl_trl.rewards
        from perfrl_trl.execution import ExecutionConfig, get_executor
        ex = get_executor(ExecutionConfig(workers=1))
        assert ex.judge("print(int(input()) * 2)", [{"input": "2", "output": "4"}]).tier_name == "R3"
        assert "ray" not in sys.modules, "ray was imported"
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_ray_address_setting():
    assert ExecutionConfig().ray_address is None  # local by default, whatever $RAY_ADDRESS says
    for bad in ("", 5):
        with pytest.raises(ValueError, match="ray_address"):
            ExecutionConfig(ray_address=bad)
    # A verdict means the same wherever it was computed: the cache key leaves the address out.
    assert ExecutionConfig(ray_address="auto").key() == ExecutionConfig().key()


def _dispatcher(n_actors: int, baseline_s: float | None):
    """A RayExecutor's dispatcher alone, on stand-in actors (no Ray): every actor up and free."""
    import threading
    from collections import OrderedDict

    from perfrl_trl.execution.ray_backend import RayExecutor, _Actor

    ex = RayExecutor.__new__(RayExecutor)
    ex.config = ExecutionConfig(ray_address="auto")
    ex._cond, ex._closed, ex._timer_due = threading.Condition(), False, None
    ex._actors = [_Actor(i, handle=None, ready=True) for i in range(n_actors)]
    ex._pending, ex._homes, ex._baseline_s = [], OrderedDict(), OrderedDict()
    ex._mean_baseline_s = baseline_s
    return ex


def _wait(ex, key, tried=(), waited=0.0):
    from perfrl_trl.execution.ray_backend import _Ticket

    ticket = _Ticket(key, set(tried), since=time.monotonic() - waited)
    ex._pending.append(ticket)
    return ticket


def test_dispatch_keeps_a_baseline_on_its_actor_and_steals_only_what_waits_long():
    ex = _dispatcher(2, baseline_s=10.0)
    with ex._cond:
        a1, a2, b1 = _wait(ex, "A"), _wait(ex, "A"), _wait(ex, "B")
        ex._assign()
        # The second actor takes B, whose baseline nobody has, rather than time A's again.
        assert a1.actor is ex._actors[0] and b1.actor is ex._actors[1] and a2.actor is None
        ex._actors[1].load = 0  # B is done; A's second request has waited less than A's baseline takes
        ex._assign()
        assert a2.actor is None
        ex._actors[0].load = 0  # A's first is done: its actor takes A's second
        ex._assign()
        assert a2.actor is ex._actors[0]
        a3 = _wait(ex, "A", waited=11.0)  # the home is busy, and it has waited longer than timing A takes
        ex._assign()
        assert a3.actor is ex._actors[1] and ex._homes["A"] == {0: 0, 1: 0}
        # A retried request goes to an actor it has not been to, while one is up.
        ex._actors[0].load = ex._actors[1].load = 0
        retry = _wait(ex, None, tried={0})
        ex._assign()
        assert retry.actor is ex._actors[1]
        ex._closed = True


def test_tiers_equal_the_local_backend(cluster):
    cfg = _ray_config(cluster)
    jobs = [
        (FAST, TESTS, SLOW),  # R4, decisively
        (SLOW + "# a copy\n", TESTS, SLOW),  # R3: the baseline itself
        (FAST.replace("// 2", "// 3"), TESTS, SLOW),  # R2: wrong answer
        ("import sys\nsys.exit(3)\n", TESTS, SLOW),  # R2: runtime error
        ("print(int(input())\n", TESTS, SLOW),  # R1
        (FAST, TESTS, None),  # R3: no baseline
        (FAST, TESTS, SLOW),  # the first again: the driver's verdict cache answers
    ]
    from perfrl_trl.execution import get_executor
    from perfrl_trl.execution.ray_backend import RayExecutor

    with Executor(dataclasses.replace(cfg, ray_address=None)) as local:
        expected = [v.tier for v in local.judge_many(jobs)]
    assert expected == [Tier.R4, Tier.R3, Tier.R2, Tier.R2, Tier.R1, Tier.R3, Tier.R4]

    with RayExecutor(cfg) as ex:
        assert ex.wait_ready(timeout=120), ex.actors()
        nodes = {a["node_id"] for a in ex.actors()}
        assert len(nodes) == 2, ex.actors()  # one actor on each node
        verdicts = ex.judge_many(jobs)
        assert [v.tier for v in verdicts] == expected, [v.to_dict() for v in verdicts]
        assert verdicts[0].speedup > 5 and verdicts[6] is verdicts[0]
        assert ex.stats["requests"] == len(jobs) and ex.stats["cache_hits"] == 1 and ex.stats["runs"] == 6
        # One baseline, timed by at most each actor once (each compares its candidates with its own timing).
        assert 1 <= ex.stats["baselines_timed"] <= 2, ex.stats
        assert ex.isolation in ("bwrap", "rlimits") and verdicts[0].isolation == ex.isolation
        assert ex.stats["actor_failures"] == 0
    # get_executor hands out a RayExecutor for a config with an address (and shares it).
    shared = get_executor(cfg)
    try:
        assert isinstance(shared, RayExecutor) and get_executor(cfg) is shared
        # The metric's scoring takes the address too (and finds the same executor for the same settings).
        from perfrl_trl.metrics import aggregate, score_programs

        settings = {"timeout_s": 2.0, "n_trials": 3, "workers": 2}
        results = score_programs(
            [FAST], [SLOW], [TESTS], execution_config=settings, ray_address=cluster.address
        )
        assert aggregate(results)["percent_optimized"] == 100.0 and shared.stats["requests"] == 1
    finally:
        _drop_shared_ray_executors()


HOSTILE = {
    "fork bomb": """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
    "memory flood": "chunks = []\nwhile True:\n    chunks.append(bytearray(50 << 20))\n",
    "one huge allocation": "x = bytearray(8 << 30)\n",
    "kill its parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "kill its group": "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
    "kill everything it can": "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
}


def test_hostile_programs_are_contained_on_the_workers(cluster):
    import ray

    from perfrl_trl.execution.ray_backend import RayExecutor

    with RayExecutor(_ray_config(cluster, timeout_s=1.5, memory_mb=512)) as ex:
        assert ex.wait_ready(timeout=120), ex.actors()
        pids = sorted(a["pid"] for a in ex.actors())
        # Each hostile program on both actors at once (a trailing comment makes the two requests differ).
        jobs = [
            (textwrap.dedent(p) + f"# {i}\n", GOOD_TESTS, None) for p in HOSTILE.values() for i in range(2)
        ]
        started = time.monotonic()
        verdicts = ex.judge_many(jobs, time_it=False)
        for (name, _), pair in zip(HOSTILE.items(), zip(verdicts[::2], verdicts[1::2])):
            for verdict in pair:
                assert verdict.tier in (Tier.R1, Tier.R2), (name, verdict)
        assert time.monotonic() - started < 120
        # The actors live on (same processes, no failure seen), and still judge.
        assert sorted(a["pid"] for a in ex.actors()) == pids and ex.stats["actor_failures"] == 0, ex.actors()
        good = ex.judge_many([(GOOD + f"  # {i}", GOOD_TESTS, None) for i in range(4)], time_it=False)
        assert all(v.tier == Tier.R3 for v in good)
    # The cluster survives: both nodes alive, both CPUs back.
    assert sum(n["Alive"] for n in ray.nodes()) == 2
    assert ray.cluster_resources().get("CPU") == 2


def test_killing_an_actor_mid_batch_loses_and_doubles_nothing(cluster):
    from perfrl_trl.execution.ray_backend import RayExecutor

    n_jobs = 16
    jobs, expected = [], []
    for i in range(n_jobs):
        n_tests = 1 + i % 3
        wrong = i % 4 == 3
        program = f"import time\ntime.sleep(0.2)\nprint({i + 1000 if wrong else i})\n"
        jobs.append((program, [{"input": "", "output": f"{i}\n"}] * n_tests, None))
        expected.append((n_tests, Tier.R2 if wrong else Tier.R3, "wrong_answer" if wrong else "passed"))

    with RayExecutor(_ray_config(cluster, timeout_s=5.0)) as ex:
        assert ex.wait_ready(timeout=120), ex.actors()
        victim = ex.actors()[0]
        futures = [ex.submit(p, t, b, time_it=False) for p, t, b in jobs]
        deadline = time.monotonic() + 60
        while ex.actors()[0]["load"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # in the middle of a run
        os.kill(victim["pid"], signal.SIGKILL)
        verdicts = [f.result(timeout=180) for f in futures]
        for i, (verdict, (n_tests, tier, status)) in enumerate(zip(verdicts, expected)):
            assert (verdict.n_tests, verdict.tier, verdict.status) == (n_tests, tier, status), (i, verdict)
        stats = ex.stats
        assert stats["actor_failures"] >= 1 and stats["retries"] >= 1, stats
        assert stats["requests"] == n_jobs and stats["runs"] == n_jobs and stats["cache_hits"] == 0, stats
        assert stats["sandbox_errors"] == 0, stats
        # Ray restarts the killed actor: a new process, judging again.
        assert ex.wait_ready(timeout=120), ex.actors()
        assert ex.actors()[0]["pid"] != victim["pid"]
        again = ex.judge_many([(GOOD + f"  # {i}", GOOD_TESTS, None) for i in range(4)], time_it=False)
        assert all(v.tier == Tier.R3 for v in again)


def test_cli_score_with_ray_address_gives_r4(cluster):
    cmd = [
        sys.executable, "-m", "perfrl_trl.cli", "score",
        "--program", str(PROGRAMS / "fast.py"),
        "--baseline", str(PROGRAMS / "slow.py"),
        "--tests", str(PROGRAMS / "tests"),
        "--ray-address", cluster.address,
        "--json",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["tier"] == "R4" and result["speedup"] > 5, result


def test_cli_sandbox_info_reports_every_node(cluster, capsys):
    from perfrl_trl.cli import main

    assert main(["sandbox-info", "--ray-address", cluster.address]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["nodes"]) == 2 and len({n["node_id"] for n in info["nodes"]}) == 2, info
    assert info["isolation"] in ("bwrap", "rlimits")
    assert all(n["isolation"] in ("bwrap", "rlimits") for n in info["nodes"])


def test_rrhf_trainer_two_steps_with_its_reward_on_the_cluster(cluster, tmp_path):
    from datasets import Dataset

    from perfrl_trl.execution.ray_backend import RayExecutor
    from perfrl_trl.models import create_pretrained
    from perfrl_trl.trainer import RRHFConfig, RRHFTrainer

    rows = [
        {
            "prompt": "Write faster version:\n" + SLOW + f"# case {n}\n",
            "input_code": SLOW,
            "target_code": FAST,
            "tests": [{"input": f"{n}\n", "output": f"{n * (n + 1) // 2}\n"}],
        }
        for n in (10, 2000, 300000, 50)
    ]
    model = create_pretrained("t5", "tiny", tmp_path / "t5", dropout_rate=0.0)
    args = RRHFConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        max_completion_length=16,
        max_prompt_length=64,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        execution_n_trials=3,
        execution_timeout_s=2.0,
        execution_workers=2,
        ray_address=cluster.address,
        max_steps=2,
    )
    trainer = RRHFTrainer(model, args=args, train_dataset=Dataset.from_list(rows))
    try:
        executor = trainer.scorer.unit_test_reward.executor
        assert isinstance(executor, RayExecutor)
        trainer.train()
        logged = [entry for entry in trainer.state.log_history if "reward" in entry]
        assert len(logged) == 2, trainer.state.log_history
        assert executor.stats["requests"] > 0 and executor.stats["actor_failures"] == 0, executor.stats
        # The targets were judged on the cluster during the steps: asking again is a cache hit, and they pass.
        hits = executor.stats["cache_hits"]
        judged = [executor.judge(FAST, row["tests"], SLOW) for row in rows]
        assert executor.stats["cache_hits"] - hits >= 2, executor.stats  # two steps of two rows
        assert all(v.tier in (Tier.R3, Tier.R4) for v in judged), [v.to_dict() for v in judged]
    finally:
        _drop_shared_ray_executors()


def test_a_node_lost_mid_batch_loses_nothing(cluster):
    # Last in the module: it takes the worker node away, and puts a new one in its place.
    from perfrl_trl.execution.ray_backend import RayExecutor

    node_args = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80 << 20}
    jobs = [
        (f"import time\ntime.sleep(0.2)\nprint({i})\n", [{"input": "", "output": f"{i}\n"}] * 2, None)
        for i in range(12)
    ]
    with RayExecutor(_ray_config(cluster, timeout_s=5.0)) as ex:
        assert ex.wait_ready(timeout=120), ex.actors()
        worker_node = next(iter(cluster.worker_nodes))
        futures = [ex.submit(p, t, b, time_it=False) for p, t, b in jobs]
        time.sleep(1.0)
        cluster.remove_node(worker_node)  # its raylet, the actor on it and that actor's sandbox
        verdicts = [f.result(timeout=180) for f in futures]
        assert [(v.tier, v.n_tests) for v in verdicts] == [(Tier.R3, 2)] * len(jobs), verdicts
        assert ex.stats["actor_failures"] >= 1 and ex.stats["retries"] >= 1, ex.stats
        assert ex.stats["requests"] == ex.stats["runs"] == len(jobs), ex.stats
        cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        assert ex.wait_ready(timeout=120), ex.actors()  # Ray restarted the lost actor on the new node
