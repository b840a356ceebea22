"""What one sandboxed run costs in our executor, against a fresh interpreter per test, and how it scales.

Part 1, per-run overhead (all sequential, one worker / one sandbox, a trivial ``print(input())`` program):
- ``ours, batched``: ``Executor.judge(program, tests, time_it=False)`` with ``--tests`` tests in one
  request (the worker forks one child per test);
- ``ours, 1 test per request``: the same runs, one ``judge`` call per test (each a distinct program, so no
  cache can answer), which adds the host/worker round trip to every run;
- ``fresh python3 -I -S in one bwrap``: a harness in one bubblewrap sandbox runs
  ``subprocess.run([python, "-I", "-S", path])`` per test (see ``reward_reliability.py``); reported both as
  the per-run time measured inside and end to end (sandbox start-up included);
- ``bwrap + python -I per test``: what a naive sandbox costs, a whole ``bwrap ... python -I -c program``
  per test, from the host.
The ratio ``ours / fresh`` is the figure of merit (target: at most 1/3).

Part 2, scaling: throughput of ``judge_many`` on a CPU-bound program with ``workers=1`` and ``workers=2``,
alternated over ``--rounds`` rounds (the machine is shared; the median ratio is reported, target >= 1.8),
next to the scaling that two plain host processes running the same loop get at the same moment, which is
the most the machine can give.

Usage:
    python benchmarks/executor_overhead.py
    python benchmarks/executor_overhead.py --tests 100 --rounds 2 --out benchmarks/results/executor_overhead.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from perfrl_trl.execution import ExecutionConfig, Executor, compare_outputs
from perfrl_trl.execution.sandbox import bwrap_available, bwrap_command

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reward_reliability import FreshInterpreterSandbox, code_version

TRIVIAL = "print(input())\n"
# The loop sits in a function, as in _spin: module-level code runs on dict lookups and is about twice slower.
CPU_BOUND = "def main(n):\n    s = 0\n    for i in range(n):\n        s += i * i % 7\n    return s\n\nprint(main(int(input())))\n"


def _cpu_bound_answer(n: int) -> str:
    return f"{sum(i * i % 7 for i in range(n))}\n"


def _spin(n: int) -> float:
    """Host-side calibration: the same loop as CPU_BOUND, in this interpreter (our own code, not a PIE one)."""
    t0 = time.perf_counter()
    s = 0
    for i in range(n):
        s += i * i % 7
    return time.perf_counter() - t0


def _tests(n: int) -> list[dict]:
    return [{"input": f"line {k}\n", "output": f"line {k}\n"} for k in range(n)]


# --------------------------------------------------------------------------------------------------------
# Part 1: per-run overhead
# --------------------------------------------------------------------------------------------------------
def ours_batched(cfg: ExecutionConfig, tests: list[dict], reps: int) -> list[float]:
    """Seconds per run of ``reps`` requests of all tests each (after one warm-up request)."""
    out = []
    with Executor(replace(cfg, workers=1)) as ex:
        ex.judge(TRIVIAL + "# warm-up\n", tests[:2], time_it=False)
        for r in range(reps):
            t0 = time.perf_counter()
            v = ex.judge(TRIVIAL + f"# batched {r}\n", tests, time_it=False)
            out.append((time.perf_counter() - t0) / len(tests))
            assert v.passed, v
    return out


def ours_per_request(cfg: ExecutionConfig, tests: list[dict]) -> float:
    with Executor(replace(cfg, workers=1)) as ex:
        ex.judge(TRIVIAL + "# warm-up\n", tests[:1], time_it=False)
        t0 = time.perf_counter()
        for k, test in enumerate(tests):
            v = ex.judge(TRIVIAL + f"# request {k}\n", [test], time_it=False)
            assert v.passed, v
        return (time.perf_counter() - t0) / len(tests)


def fresh_in_one_bwrap(cfg: ExecutionConfig, tests: list[dict]) -> tuple[float, float]:
    """(seconds per run measured inside the sandbox, seconds per run end to end)."""
    box = FreshInterpreterSandbox(replace(cfg, workers=1), python_args=["-I", "-S"])
    job = {"id": "trivial", "code": TRIVIAL, "inputs": [t["input"] for t in tests], "repeats": 1}
    t0 = time.perf_counter()
    reps = box.run_batch([job])["trivial"]
    total = time.perf_counter() - t0
    runs = reps[0]
    assert len(runs) == len(tests) and all(
        r["rc"] == 0 and compare_outputs(r["stdout"], t["output"]) for r, t in zip(runs, tests)
    ), runs[:2]
    return sum(r["wall"] for r in runs) / len(runs), total / len(runs)


def bwrap_per_test(cfg: ExecutionConfig, tests: list[dict]) -> float:
    full = bwrap_command(cfg)
    cmd = [*full[: full.index("--")], "--", sys.executable, "-I", "-c", TRIVIAL]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    t0 = time.perf_counter()
    for test in tests:
        out = subprocess.run(cmd, input=test["input"], capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0 and compare_outputs(out.stdout, test["output"]), out.stderr[-500:]
    return (time.perf_counter() - t0) / len(tests)


# --------------------------------------------------------------------------------------------------------
# Part 2: scaling over workers
# --------------------------------------------------------------------------------------------------------
def calibrate_n(target_s: float) -> int:
    """Loop count that takes about ``target_s`` seconds here."""
    n = 20_000
    while True:
        dt = min(_spin(n) for _ in range(3))
        if dt > 0.02:
            return max(1000, int(n * target_s / dt))
        n *= 4


def _sandbox_cpu(ex: Executor) -> float:
    """CPU seconds used so far by every process under the executor's sandboxes (from /proc, so that runs the
    worker has reaped count through its ``cutime``); reads the pool's private handles, a benchmark's licence."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields_ = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields_[1]), sum(int(x) for x in fields_[11:15]))
    roots = {w.proc.pid for w in ex._pool.workers if w.proc is not None}
    total, frontier = 0, set(roots)
    while frontier:
        total += sum(stats[p][1] for p in frontier if p in stats)
        frontier = {p for p, (ppid, _) in stats.items() if ppid in frontier}
    return total / tick


def ours_throughput(
    cfg: ExecutionConfig, workers: int, jobs: int, n: int, tests_per_job: int, tag: str
) -> dict:
    tests = [{"input": f"{n + k}\n", "output": _cpu_bound_answer(n + k)} for k in range(tests_per_job)]
    batch = [(CPU_BOUND + f"# {tag} job {j}\n", tests, None) for j in range(jobs)]
    with Executor(replace(cfg, workers=workers)) as ex:
        # Start every worker before the clock starts: start-up is a one-off, not throughput.
        ex.judge_many(
            [(CPU_BOUND + f"# {tag} warm {w}\n", tests[:1], None) for w in range(workers)], time_it=False
        )
        cpu0 = _sandbox_cpu(ex)
        t0 = time.perf_counter()
        verdicts = ex.judge_many(batch, time_it=False)
        wall = time.perf_counter() - t0
        cpu1 = _sandbox_cpu(ex)
    assert all(v.passed for v in verdicts), [v.status for v in verdicts if not v.passed][:3]
    runs = jobs * tests_per_job
    child_cpu = cpu1 - cpu0
    return {
        "workers": workers,
        "wall_s": wall,
        "runs_per_s": runs / wall,
        "runs": runs,
        "child_cpu_s": child_cpu,
    }


def host_throughput(processes: int, loops: int, n: int) -> float:
    """Loops per second of the same loop in ``processes`` plain host processes (machine's own scaling)."""
    with mp.get_context("fork").Pool(processes) as pool:
        pool.map(_spin, [1000] * processes)
        t0 = time.perf_counter()
        pool.map(_spin, [n] * loops, chunksize=1)
        return loops / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=200, help="runs of the trivial program per measurement")
    parser.add_argument("--naive-tests", type=int, default=40, help="runs for the bwrap-per-test variant")
    parser.add_argument("--reps", type=int, default=3, help="batched requests for ours (median kept)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated workers=1 / workers=2 rounds")
    parser.add_argument("--jobs", type=int, default=16, help="programs per scaling measurement")
    parser.add_argument("--tests-per-job", type=int, default=3)
    parser.add_argument("--run-s", type=float, default=0.08, help="approximate CPU seconds per scaling run")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if not bwrap_available():
        raise SystemExit("bubblewrap is not usable here; this benchmark compares sandboxed runs")

    cfg = ExecutionConfig()
    tests = _tests(args.tests)
    results: dict = {
        "code_version": code_version(),
        "cores": len(os.sched_getaffinity(0)),
        "loadavg_start": os.getloadavg(),
    }
    steps = tqdm(total=4 + 2 * args.rounds, desc="executor overhead")

    per_run = {}
    batched = ours_batched(cfg, tests, args.reps)
    per_run["ours, batched (1 worker)"] = statistics.median(batched)
    steps.update(1)
    per_run["ours, 1 test per request (1 worker)"] = ours_per_request(cfg, tests)
    steps.update(1)
    inside, end_to_end = fresh_in_one_bwrap(cfg, tests)
    per_run["fresh python3 -I -S per test, in one bwrap (timed inside)"] = inside
    per_run["fresh python3 -I -S per test, in one bwrap (end to end)"] = end_to_end
    steps.update(1)
    per_run["bwrap + python -I per test (naive sandbox)"] = bwrap_per_test(cfg, _tests(args.naive_tests))
    steps.update(1)

    n = calibrate_n(args.run_s)
    rounds = []
    for r in range(args.rounds):
        one = ours_throughput(cfg, 1, args.jobs, n, args.tests_per_job, f"r{r}w1")
        steps.update(1)
        two = ours_throughput(cfg, 2, args.jobs, n, args.tests_per_job, f"r{r}w2")
        steps.update(1)
        loops = max(4, args.jobs * args.tests_per_job // 4)
        host = host_throughput(2, loops, n) / host_throughput(1, loops, n)
        rounds.append(
            {"w1": one, "w2": two, "ratio": two["runs_per_s"] / one["runs_per_s"], "host_ratio": host}
        )
    steps.close()
    results["loadavg_end"] = os.getloadavg()

    fresh = per_run["fresh python3 -I -S per test, in one bwrap (timed inside)"]
    ours = per_run["ours, batched (1 worker)"]
    print(f"\nPer-run cost of a trivial program (print(input())), sequential, {args.tests} runs each:")
    width = max(len(k) for k in per_run)
    for name, sec in per_run.items():
        print(
            f"  {name:<{width}}  {sec * 1e3:8.2f} ms/run  {1 / sec:8.1f} runs/s  x{sec / fresh:5.2f} of fresh"
        )
    print(f"\nours / fresh interpreter = {ours / fresh:.3f}  (target <= 0.333)")
    print(f"ours (1 test per request) / fresh = {per_run['ours, 1 test per request (1 worker)'] / fresh:.3f}")
    print(f"ours / naive bwrap per test = {ours / per_run['bwrap + python -I per test (naive sandbox)']:.3f}")

    print(
        f"\nScaling on a CPU-bound program (~{args.run_s * 1e3:.0f} ms per run, {args.jobs} x {args.tests_per_job} runs):"
    )

    def busy(m: dict) -> float:
        return m["child_cpu_s"] / m["wall_s"]

    for k, rd in enumerate(rounds):
        print(
            f"  round {k}: workers=1 {rd['w1']['runs_per_s']:6.2f} runs/s ({busy(rd['w1']):.2f} cores busy), "
            f"workers=2 {rd['w2']['runs_per_s']:6.2f} runs/s ({busy(rd['w2']):.2f} cores busy) -> x{rd['ratio']:.2f}"
            f"   (two plain host processes: x{rd['host_ratio']:.2f})"
        )
    ratio = statistics.median(rd["ratio"] for rd in rounds)
    host = statistics.median(rd["host_ratio"] for rd in rounds)
    # On a shared machine the other tenants decide how much of the second core we get; the best round
    # (as timeit's minimum) is the closest to what the executor does when the cores are free.
    best = max(rd["ratio"] for rd in rounds)
    # Runs per second per core actually busy: ~1.0 means the second worker adds no serialisation of its own.
    per_core = statistics.median(
        (rd["w2"]["runs_per_s"] / busy(rd["w2"])) / (rd["w1"]["runs_per_s"] / busy(rd["w1"])) for rd in rounds
    )
    print(
        f"best round x{best:.2f}; cores busy with workers=2: "
        + ", ".join(f"{busy(rd['w2']):.2f}" for rd in rounds)
    )
    print(
        f"median scaling workers=2 / workers=1 = x{ratio:.2f} (target >= 1.8); the machine itself gave x{host:.2f}"
    )
    print(f"throughput per busy core, workers=2 / workers=1 = x{per_core:.2f} (1.0 = no serialisation)")
    print(f"load average: start {results['loadavg_start']}, end {results['loadavg_end']}")

    results.update(
        {
            "per_run_s": per_run,
            "ours_batched_reps_s": batched,
            "overhead_ratio_ours_over_fresh": ours / fresh,
            "scaling_rounds": rounds,
            "scaling_ratio_median": ratio,
            "scaling_ratio_best": best,
            "per_busy_core_ratio_median": per_core,
            "host_scaling_ratio_median": host,
            "cpu_bound_loop_n": n,
            "args": vars(args) | {"out": str(args.out)},
        }
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
