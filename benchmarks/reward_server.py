"""The reward through HTTP (``perfrl-trl serve``) against in process, at equal cores: throughput, latency, losses.

Both arms judge the candidates of the reward-throughput benchmark (``reward_throughput.py``: per real PIE pair
from ``../shared/pie``, the slow program's copy, the human-written target, a broken and a non-compiling target,
each against the slow program), with the default ``ExecutionConfig`` and W sandbox workers each:

- ``inprocess``: a ``UnitTestRewardFunction`` in this process, every candidate of a chunk submitted at once (what
  a trainer does);
- ``http``: a ``perfrl-trl serve --workers W`` process on 127.0.0.1 (a token set, as off loopback), sent one
  query per request by ``--clients`` concurrent clients with keep-alive connections (what OpenRLHF does: one
  rollout, one request), in OpenRLHF's protocol with the label as JSON.

The pairs go in chunks, each judged by both arms in turn, in a rotating order, so the machine's other load hits
both alike; each arm has its own sandbox workers and caches (nothing one arm learned helps the other). Measured:

- **throughput**: candidates per wall-second, and the ratio http / inprocess with a 95% bootstrap interval over
  the chunks (``reward_throughput.ratio_interval``); and the core-seconds each arm's chunks cost (this process
  and every process under it, server and sandboxes included, read from ``/proc``), as a ratio with its
  interval too: the steadier figure on a shared machine;
- **latency**: per candidate, from the request's send to its answer (http) or from submission to its verdict
  (inprocess): p50 and p99;
- **overhead**: one trivial candidate at a time (``--overhead-n`` each, alternated): the median latency of each
  arm and the CPU spent around the sandbox per candidate (this process, plus the server process for ``http``),
  so the price of HTTP per candidate, apart from the programs' own CPU time, which load moves far more;
- **nothing lost**: every request answered 200 with one reward per query and no sample past the deadline, and
  the two arms' pass/fail agreeing on every candidate (the tier above it can differ only where the timing rule
  meets noise: R3 against R4).

The clients and the server share this machine's cores with the sandbox workers, so the HTTP arm pays for both
ends of the connection.

Usage:
    python benchmarks/reward_server.py --n-pairs 8                  # quick look
    python benchmarks/reward_server.py --out benchmarks/results/reward_server.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ray_throughput import tree_cpu
from reward_reliability import PIE_DIR, load_sample
from reward_throughput import ROLES, make_candidates, ratio_interval

from perfrl_trl.execution import ExecutionConfig, Tier
from perfrl_trl.rewards import UnitTestRewardFunction

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("inprocess", "http")
PROMPT = "Make this program faster:\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


class ServerArm:
    """A ``perfrl-trl serve`` process and a pool of keep-alive clients."""

    def __init__(self, workers: int, clients: int):
        self.port, self.token = _free_port(), secrets.token_urlsafe(24)
        argv = ["serve", "--port", str(self.port), "--workers", str(workers)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perfrl_trl.cli", *argv],
            cwd=ROOT,
            env={**os.environ, "PERFRL_TRL_TOKEN": self.token},
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if "listening" not in line:
            raise SystemExit(f"the server did not start: {line!r}")
        self.pool = ThreadPoolExecutor(clients, thread_name_prefix="client")
        self.local = threading.local()

    def _post(self, body: bytes) -> tuple[int, dict | None, float]:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        t0 = time.perf_counter()
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            try:
                conn.request("POST", "/get_reward", body=body, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closes a keep-alive connection left idle (while the other arm ran) before any
                # request reached it: reconnect once, as HTTP clients do.
                conn.close()
                self.local.conn = None
                if reused and attempt == 0:
                    continue
                return -1, None, time.perf_counter() - t0
            latency = time.perf_counter() - t0
            return resp.status, (json.loads(raw) if resp.status == 200 else None), latency
        raise AssertionError("unreachable")

    def judge(self, jobs: list[tuple[str, list, str]]) -> list[dict]:
        bodies = [
            json.dumps(
                {
                    "query": [PROMPT + program],
                    "prompts": [PROMPT],
                    "labels": [json.dumps({"tests": tests, "input_code": baseline})],
                }
            ).encode()
            for program, tests, baseline in jobs
        ]
        out = []
        for status, payload, latency in self.pool.map(self._post, bodies):
            ok = status == 200 and payload is not None and len(payload["rewards"]) == 1
            timed_out = bool(ok and payload["extra_logs"]["timed_out"][0])
            tier = int(payload["extra_logs"]["tier"][0]) if ok else None
            out.append({"status": status, "tier": tier, "latency": latency, "lost": not ok or timed_out})
        return out

    def server_cpu(self) -> float:
        """CPU seconds of the server process itself (not its sandboxes): HTTP, JSON, the judge's bookkeeping."""
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.pool.shutdown()
        self.proc.terminate()
        self.proc.wait(timeout=60)


class InProcessArm:
    """A ``UnitTestRewardFunction`` with its own executor in this process."""

    def __init__(self, workers: int):
        # Its own executor (not the process-wide one), so that no cache is shared with anything else.
        from perfrl_trl.execution import Executor

        self.executor = Executor(ExecutionConfig(workers=workers))
        self.reward = UnitTestRewardFunction(executor=self.executor)

    def judge(self, jobs: list[tuple[str, list, str]]) -> list[dict]:
        start: dict[int, float] = {}
        done: dict[int, float] = {}
        futures = []
        for i, (program, tests, baseline) in enumerate(jobs):
            start[i] = time.perf_counter()
            fut = self.executor.submit(program, tests, baseline)
            fut.add_done_callback(lambda _, i=i: done.__setitem__(i, time.perf_counter()))
            futures.append(fut)
        verdicts = [f.result() for f in futures]
        while len(done) < len(futures):  # the callbacks run just after result() wakes up
            time.sleep(0.001)
        return [
            {"status": 200, "tier": int(v.tier), "latency": done[i] - start[i], "lost": False}
            for i, v in enumerate(verdicts)
        ]

    def close(self) -> None:
        self.executor.close()


def overhead(arms: dict, n: int) -> dict:
    """One trivial candidate at a time (a correctness run, no baseline; distinct programs, so no cache answers),
    alternated between the arms: latency, and the CPU of the processes around the sandbox per candidate (this
    process for ``inprocess``; this process, the client, plus the server process for ``http``)."""
    tests = [{"input": "2\n", "output": "4\n"}]
    server = arms["http"]
    out: dict[str, dict[str, list[float]]] = {name: {"latency": [], "cpu": []} for name in ARMS}
    for k in range(n):
        for name in ARMS if k % 2 == 0 else ARMS[::-1]:
            job = (f"print(2 * int(input()))  # {name} {k}\n", tests, None)
            cpu0 = time.process_time() + (server.server_cpu() if name == "http" else 0.0)
            record = arms[name].judge([job])[0]
            cpu1 = time.process_time() + (server.server_cpu() if name == "http" else 0.0)
            assert record["tier"] == 3 and not record["lost"], (name, record)
            out[name]["latency"].append(record["latency"])
            out[name]["cpu"].append(cpu1 - cpu0)
    summary = {
        name: {
            "latency_median_s": statistics.median(v["latency"]),
            "host_cpu_per_candidate_s": sum(v["cpu"]) / n,
        }
        for name, v in out.items()
    }
    summary["added_latency_s"] = (
        summary["http"]["latency_median_s"] - summary["inprocess"]["latency_median_s"]
    )
    summary["added_cpu_per_candidate_s"] = (
        summary["http"]["host_cpu_per_candidate_s"] - summary["inprocess"]["host_cpu_per_candidate_s"]
    )
    summary["n"] = n
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-pairs", type=int, default=40, help="PIE pairs in the sample (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (the reward-throughput sample)")
    parser.add_argument("--chunk", type=int, default=4, help="pairs judged by each arm in turn (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="sandbox workers of each arm (default 2)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients (default 16)")
    parser.add_argument("--overhead-n", type=int, default=100, help="trivial candidates for the overhead")
    parser.add_argument("--pie-dir", type=Path, default=PIE_DIR)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    if not (args.pie_dir / "py_test_pairs.jsonl").is_file():
        raise SystemExit(f"needs the PIE data in {args.pie_dir} (see its README); nothing to measure")

    pairs = load_sample(args.pie_dir, args.n_pairs, args.seed)
    jobs = [
        (candidates[role], pair["tests"], pair["slow"])
        for pair in pairs
        for candidates in [make_candidates(pair)]
        for role in ROLES
    ]
    per_pair = len(ROLES)
    t0 = time.perf_counter()
    arms = {"inprocess": InProcessArm(args.workers), "http": ServerArm(args.workers, args.clients)}
    print(
        f"both arms up in {time.perf_counter() - t0:.1f} s; {len(pairs)} pairs, {len(jobs)} candidates an arm"
    )

    records: dict[str, list[dict]] = {name: [] for name in ARMS}
    per_chunk: list[dict] = []
    # CPU of this process and everything under it (the server, both arms' sandboxes), while an arm works.
    per_chunk_core: list[dict] = []
    me = {os.getpid()}
    try:
        for k, lo in enumerate(range(0, len(pairs), args.chunk)):
            chunk = jobs[lo * per_pair : (lo + args.chunk) * per_pair]
            order = ARMS if k % 2 == 0 else ARMS[::-1]
            walls, cores = {}, {}
            for name in order:
                t, c = time.perf_counter(), tree_cpu(me)
                records[name].extend(arms[name].judge(chunk))
                walls[name], cores[name] = time.perf_counter() - t, tree_cpu(me) - c
            per_chunk.append(walls)
            per_chunk_core.append(cores)
            done = len(records["http"])
            rates = "  ".join(f"{n} {done / sum(c[n] for c in per_chunk):.2f} cand/s" for n in ARMS)
            print(f"  {done:>4}/{len(jobs)} candidates   {rates}", flush=True)
        over = overhead(arms, args.overhead_n)
    finally:
        for arm in arms.values():
            arm.close()

    n = len(jobs)
    summary = {}
    for name in ARMS:
        wall = sum(c[name] for c in per_chunk)
        lat = [r["latency"] for r in records[name]]
        summary[name] = {
            "candidates": n,
            "wall_s": wall,
            "candidates_per_wall_s": n / wall,
            "core_s_per_candidate": sum(c[name] for c in per_chunk_core) / n,
            "latency_p50_s": _percentile(lat, 0.50),
            "latency_p99_s": _percentile(lat, 0.99),
            "lost": sum(r["lost"] for r in records[name]),
            "non_200": sum(r["status"] != 200 for r in records[name]),
            "statuses": {str(k): v for k, v in sorted(Counter(r["status"] for r in records[name]).items())},
            "tiers": {t.name: sum(r["tier"] == int(t) for r in records[name]) for t in Tier},
        }
    ratio = ratio_interval(per_chunk, "http", reference="inprocess")
    core_ratio = ratio_interval(per_chunk_core, "http", reference="inprocess")
    pairs_of = list(zip(records["inprocess"], records["http"]))
    same_pass = sum(a["tier"] is not None and b["tier"] is not None and (a["tier"] >= 3) == (b["tier"] >= 3)
                    for a, b in pairs_of)  # fmt: skip
    same_tier = sum(a["tier"] == b["tier"] for a, b in pairs_of)

    print(
        f"\n{len(pairs)} PIE pairs, {n} candidates an arm, {args.workers} workers each, {args.clients} clients\n"
    )
    print(f"{'arm':<10} {'cand/s':>8} {'core-s/c':>9} {'p50 ms':>9} {'p99 ms':>9} {'lost':>5}  tiers")
    for name in ARMS:
        s = summary[name]
        print(
            f"{name:<10} {s['candidates_per_wall_s']:>8.2f} {s['core_s_per_candidate']:>9.3f} "
            f"{s['latency_p50_s'] * 1e3:>9.1f} "
            f"{s['latency_p99_s'] * 1e3:>9.1f} {s['lost']:>5}  {s['tiers']}"
        )
    print(
        f"\nthroughput http / inprocess: {ratio['ratio']:.3f} (95% interval {ratio['ci95'][0]:.3f}-"
        f"{ratio['ci95'][1]:.3f} over {ratio['n_chunks']} chunks)"
    )
    print(
        f"core-seconds inprocess / http: {core_ratio['ratio']:.3f} (95% interval {core_ratio['ci95'][0]:.3f}-"
        f"{core_ratio['ci95'][1]:.3f})"
    )
    print(f"same pass/fail {same_pass}/{n}, same tier {same_tier}/{n}")
    print(
        f"one trivial candidate at a time ({over['n']} each): median latency inprocess "
        f"{over['inprocess']['latency_median_s'] * 1e3:.1f} ms, http {over['http']['latency_median_s'] * 1e3:.1f} ms "
        f"(+{over['added_latency_s'] * 1e3:.1f} ms); CPU around the sandbox per candidate inprocess "
        f"{over['inprocess']['host_cpu_per_candidate_s'] * 1e3:.2f} ms, http "
        f"{over['http']['host_cpu_per_candidate_s'] * 1e3:.2f} ms (+{over['added_cpu_per_candidate_s'] * 1e3:.2f} ms)"
    )

    if args.out:
        pie_dir = os.path.relpath(args.pie_dir.resolve(), ROOT)
        command = [
            "python benchmarks/reward_server.py",
            *(f"--{k.replace('_', '-')} {v}" for k, v in (("n_pairs", args.n_pairs), ("seed", args.seed),
              ("chunk", args.chunk), ("workers", args.workers), ("clients", args.clients),
              ("overhead_n", args.overhead_n))),
            f"--out {os.path.relpath(args.out.resolve(), ROOT)}",
        ]  # fmt: skip
        result = {
            "command": " ".join(command),
            "pie_dir": pie_dir,
            "n_pairs": len(pairs),
            "candidates_per_arm": n,
            "roles": list(ROLES),
            "workers": args.workers,
            "clients": args.clients,
            "machine_cores": os.cpu_count(),
            "summary": summary,
            "throughput_ratio_http_over_inprocess": ratio,
            "core_s_ratio_inprocess_over_http": core_ratio,
            "same_pass_fail": same_pass,
            "same_tier": same_tier,
            "overhead_one_at_a_time": over,
            "per_chunk_wall_s": per_chunk,
            "per_chunk_core_s": per_chunk_core,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {os.path.relpath(args.out.resolve(), ROOT)}")


if __name__ == "__main__":
    main()
