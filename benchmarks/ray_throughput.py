"""Judging through Ray against the local backend at equal cores: throughput, added latency, fidelity.

Both backends judge the same candidates of the reward-throughput benchmark (``reward_throughput.py``: per
real PIE pair from ``../shared/pie``, the slow program's copy, the human-written target, a broken and a
non-compiling target, each against the slow program), side by side in one run:

- ``local``: ``Executor(ExecutionConfig(workers=W))``, W sandbox workers on this machine;
- ``ray``: ``RayExecutor(ExecutionConfig(workers=W, ray_address=...))``, W actors of one CPU each. Without
  ``--ray-address`` the script starts a Ray cluster on this machine (127.0.0.1 only) of W nodes with one CPU
  each, so each actor sits on its own node, as on a real cluster.

The pairs go in chunks, and every chunk is judged by each backend in turn, in a rotating order, so the
machine's other load hits both alike. Measured:

- **throughput**: candidates per wall-second over the chunks (both backends have W cores), and the ratio
  ray / local with a 95% bootstrap interval over the chunks (``reward_throughput.ratio_interval``). Also the
  core-seconds each spent: for ``local`` this process's CPU plus its sandboxes' (``/proc``), for ``ray`` this
  process's CPU (the driver, Ray's client threads included) plus the actors' processes and their sandboxes;
  the CPU of Ray's own daemons (raylets, GCS, agents) is reported apart, as load per wall-second;
- **added latency**: one trivial candidate at a time (correctness run only, distinct programs so no cache
  answers), alternated between the backends; the median of each and their difference in ms;
- **fidelity**, exactly as ``reward_throughput.py`` reports it: false R4 (the slow program's copy judged R4)
  and detection (the target judged R4 where a reference measurement, ``--ref-trials`` paired runs on a local
  worker after each chunk, finds it >= 1.25x faster), for both backends, and how many candidates the two
  gave the same tier.

Usage:
    python benchmarks/ray_throughput.py --n-pairs 8                 # quick look
    python benchmarks/ray_throughput.py --out benchmarks/results/ray_throughput.json
    python benchmarks/ray_throughput.py --ray-address auto --workers 16   # an existing cluster
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reward_reliability import PIE_DIR, load_sample
from reward_throughput import ROLES, ExecutorRule, ratio_interval, reference_speedups, summarise

from perfrl_trl.execution import ExecutionConfig, Executor, Tier
from perfrl_trl.reporting import provenance

BACKENDS = ("local", "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local_cluster(n_nodes: int):
    """A Ray cluster of ``n_nodes`` one-CPU nodes on this machine, loopback only, no usage reports."""
    os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"})
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    ray_constants.ENABLE_RAY_CLUSTER = False
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80 << 20}
    head = {**node, "include_dashboard": False, "dashboard_port": _free_port()}
    cluster = Cluster(
        initialize_head=True, head_node_args={**head, "dashboard_agent_listen_port": _free_port()}
    )
    for _ in range(n_nodes - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    return cluster


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, CPU ticks of the process and its reaped children, command name)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    raw = fh.read()
            except OSError:
                continue
            name = raw[raw.find(b"(") + 1 : raw.rfind(b")")].decode(errors="replace")
            fields_ = raw.rsplit(b")", 1)[1].split()
            table[int(entry)] = (int(fields_[1]), sum(int(x) for x in fields_[11:15]), name)
    return table


def tree_cpu(roots: set[int], table: dict | None = None) -> float:
    """CPU seconds used so far by ``roots`` and every process under them (reaped ones through cutime)."""
    table = _proc_table() if table is None else table
    total, frontier, seen = 0, set(roots), set()
    while frontier:
        seen |= frontier
        total += sum(table[p][1] for p in frontier if p in table)
        frontier = {p for p, (ppid, _, _) in table.items() if ppid in frontier and p not in seen}
    return total / os.sysconf("SC_CLK_TCK")


class LocalBackend(ExecutorRule):
    """``reward_throughput.ExecutorRule``: the local executor, warmed up, CPU read from /proc."""


class RayBackend(ExecutorRule):
    """The same judging through a ``RayExecutor`` (warmed up: every actor started, its sandbox calibrated)."""

    def __init__(self, config: ExecutionConfig):
        from perfrl_trl.execution.ray_backend import RayExecutor

        self.config = config
        self.ex = RayExecutor(config)
        if not self.ex.wait_ready(timeout=300):
            raise SystemExit(f"not every Ray actor came up: {self.ex.actors()}")
        warm = [
            (f"print(input())  # warm-up {i}\n", [{"input": "1\n", "output": "1\n"}], None)
            for i in range(4 * config.workers)
        ]
        self.ex.judge_many(warm, time_it=False)

    def cpu(self) -> float:
        actors = {a["pid"] for a in self.ex.actors() if a.get("pid")}
        return time.process_time() + tree_cpu(actors)


def ray_daemon_cpu(exclude: set[int]) -> float:
    """CPU of Ray's own processes on this machine (raylets, GCS, agents, monitors), not the actors'."""
    table = _proc_table()
    daemons = {
        pid
        for pid, (_, _, name) in table.items()
        if pid not in exclude and (name in ("raylet", "gcs_server") or name.startswith("ray::"))
    }
    daemons |= {
        pid
        for pid in table
        if pid not in exclude and _cmdline_has(pid, ("ray/dashboard", "ray/_private/", "ray/autoscaler"))
    }
    return sum(table[p][1] for p in daemons) / os.sysconf("SC_CLK_TCK")


def _cmdline_has(pid: int, parts: tuple[str, ...]) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().decode(errors="replace")
    except OSError:
        return False
    return any(p in cmd for p in parts)


def latency(backends: dict, n: int) -> dict:
    """One trivial candidate at a time through each backend, alternated; wall ms of each call."""
    tests = [{"input": "2\n", "output": "4\n"}]
    times: dict[str, list[float]] = {name: [] for name in backends}
    for i in range(n):
        order = BACKENDS if i % 2 == 0 else BACKENDS[::-1]
        for name in order:
            program = f"print(int(input()) * 2)  # latency {name} {i}\n"
            t0 = time.perf_counter()
            verdict = backends[name].ex.judge(program, tests, time_it=False)
            times[name].append(1000 * (time.perf_counter() - t0))
            assert verdict.tier == Tier.R3, verdict
    out = {
        name: {"median_ms": statistics.median(v), "mean_ms": statistics.fmean(v)} for name, v in times.items()
    }
    out["added_ms_median"] = out["ray"]["median_ms"] - out["local"]["median_ms"]
    out["n"] = n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-pairs", type=int, default=40, help="PIE pairs in the sample (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (the reward-throughput sample)")
    parser.add_argument(
        "--chunk", type=int, default=4, help="pairs judged by each backend in turn (default 4)"
    )
    parser.add_argument("--ref-trials", type=int, default=9, help="runs of each program in the reference")
    parser.add_argument("--workers", type=int, default=2, help="cores of each backend: workers / actors")
    parser.add_argument("--latency-n", type=int, default=40, help="trivial candidates for the latency")
    parser.add_argument("--ray-address", default=None, help="an existing cluster (default: start one here)")
    parser.add_argument("--pie-dir", type=Path, default=PIE_DIR)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    if not (args.pie_dir / "py_test_pairs.jsonl").is_file():
        raise SystemExit(f"needs the PIE data in {args.pie_dir} (see its README); nothing to measure")

    import ray

    cluster = None
    if args.ray_address is None:
        t0 = time.perf_counter()
        cluster = start_local_cluster(args.workers)
        print(f"started a {args.workers}-node Ray cluster on 127.0.0.1 in {time.perf_counter() - t0:.1f} s")
        address = cluster.address
    else:
        address = args.ray_address
    ray.init(address=address, log_to_driver=False)
    base = ExecutionConfig(workers=args.workers)
    pairs = load_sample(args.pie_dir, args.n_pairs, args.seed)
    backends = {"local": LocalBackend(base), "ray": RayBackend(replace(base, ray_address=address))}
    ref_ex = Executor(replace(base, sequential_timing=False, n_trials=args.ref_trials))
    own_pids = {os.getpid()} | {a["pid"] for a in backends["ray"].ex.actors()}
    records: dict[str, list] = {name: [] for name in BACKENDS}
    core_s = dict.fromkeys(BACKENDS, 0.0)
    wall_s = dict.fromkeys(BACKENDS, 0.0)
    per_chunk: list[dict] = []
    ref: list[float | None] = []
    chunks = [pairs[i : i + args.chunk] for i in range(0, len(pairs), args.chunk)]
    started = time.perf_counter()
    commit = provenance()["commit"]  # now: the checkout may move while this runs
    daemons0 = ray_daemon_cpu(own_pids)
    try:
        lat = latency(backends, args.latency_n)
        print(
            f"latency per trivial candidate: local {lat['local']['median_ms']:.1f} ms, ray "
            f"{lat['ray']['median_ms']:.1f} ms (median of {args.latency_n}): +{lat['added_ms_median']:.1f} ms"
        )
        for c, chunk in enumerate(chunks):
            order = BACKENDS if c % 2 == 0 else BACKENDS[::-1]
            per_chunk.append({"pairs": [p["index"] for p in chunk], "order": list(order)})
            for name in order:
                backend = backends[name]
                cpu0, t0 = backend.cpu(), time.perf_counter()
                records[name] += backend.judge(chunk)
                wall = time.perf_counter() - t0
                core_s[name] += backend.cpu() - cpu0
                wall_s[name] += wall
                per_chunk[-1][name] = wall
            ref += [r and r["speedup"] for r in reference_speedups(ref_ex, chunk, args.ref_trials)]
            done = sum(len(x) for x in chunks[: c + 1])
            rates = "  ".join(f"{n} {len(ROLES) * done / wall_s[n]:.2f} cand/s" for n in BACKENDS)
            print(f"[{time.perf_counter() - started:6.0f} s] {done}/{len(pairs)} pairs  {rates}", flush=True)
        elapsed = time.perf_counter() - started
        daemons = ray_daemon_cpu(own_pids) - daemons0
        stats = {name: dict(b.ex.stats) for name, b in backends.items()}
        actors = backends["ray"].ex.actors()
    finally:
        for backend in backends.values():
            backend.close()
        ref_ex.close()
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()

    n_candidates = len(ROLES) * len(pairs)
    summary = {
        name: summarise(records[name], ref, n_candidates, core_s[name], wall_s[name]) for name in BACKENDS
    }
    for name in BACKENDS:
        summary[name]["candidates_per_wall_s"] = n_candidates / wall_s[name]
        summary[name]["core_s_per_candidate"] = core_s[name] / n_candidates
    throughput = ratio_interval(per_chunk, "ray", reference="local")  # sum(local wall) / sum(ray wall)
    agree = sum(
        a[role]["tier"] == b[role]["tier"] for a, b in zip(records["local"], records["ray"]) for role in ROLES
    )

    def pct(x):
        return "  n/a" if x is None else f"{100 * x:5.1f}%"

    print(f"\n{len(pairs)} PIE pairs, {n_candidates} candidates per backend, {args.workers} cores each\n")
    header = f"{'backend':<8} {'cand/wall-s':>11} {'core-s/cand':>11} {'wall s':>7}  {'false R4':>16}  {'detected @1.25x':>18}"
    print(header)
    print("-" * len(header))
    for name in BACKENDS:
        s = summary[name]
        print(
            f"{name:<8} {s['candidates_per_wall_s']:>11.2f} {s['core_s_per_candidate']:>11.3f} {s['wall_s']:>7.1f}  "
            f"{pct(s['false_r4'])} ({s['n_false_r4']:>2}/{s['n_self_pairs']:<3})  "
            f"{pct(s['detected_at_1_25'])} ({s['n_detected_at_1_25']:>2}/{s['n_targets_at_1_25']:<3})"
        )
    print(
        f"\nthroughput ray / local at equal cores: {throughput['ratio']:.3f}x "
        f"[{throughput['ci95'][0]:.3f}, {throughput['ci95'][1]:.3f}] (95%, bootstrap over {len(per_chunk)} chunks)"
    )
    print(f"core-seconds ray / local: {core_s['ray'] / max(core_s['local'], 1e-9):.3f}")
    print(f"Ray's daemons used {daemons:.1f} CPU s over {elapsed:.0f} s ({daemons / elapsed:.3f} cores)")
    print(f"added latency per candidate: {lat['added_ms_median']:.1f} ms (median)")
    print(f"local and ray gave the same tier to {agree}/{n_candidates} candidates")
    print("tiers per role: " + "; ".join(f"{n}: {summary[n]['tiers']}" for n in BACKENDS))
    print(f"executor stats: {stats}")

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        version = commit
        result = {
            "code_version": version,
            "n_pairs": len(pairs),
            "seed": args.seed,
            "chunk": args.chunk,
            "workers": args.workers,
            "cluster": "started here: one-CPU nodes on 127.0.0.1"
            if cluster is not None
            else args.ray_address,
            "ref_trials": args.ref_trials,
            "wall_s": elapsed,
            "throughput_ratio_ray_vs_local": throughput,
            "core_s_ratio_ray_vs_local": core_s["ray"] / max(core_s["local"], 1e-9),
            "ray_daemons_cpu_s": daemons,
            "latency": lat,
            "backends": summary,
            "same_tier": agree,
            "executor_stats": stats,
            "actors": actors,
            "wall_s_per_chunk": per_chunk,
            "pairs": [
                {
                    "index": p["index"],
                    "problem_id": p["problem_id"],
                    "reference_speedup": s,
                    **{
                        name: {role: int(records[name][k][role]["tier"]) for role in ROLES}
                        for name in BACKENDS
                    },
                }
                for k, (p, s) in enumerate(zip(pairs, ref))
            ],
        }
        args.out.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
