"""Reward throughput on a competent policy's candidate mix: candidates judged per core-second, at what fidelity.

For each of a deterministic sample of real PIE pairs (``../shared/pie``), four candidates are judged against
the slow program, the way an RL step judges a policy that passes a good share of its candidates:

- ``self``: the slow program itself (plus a comment naming the pair, so no cache can serve it): R3;
- ``target``: the human-written fast program: mostly R4;
- ``broken``: the target with its first line of input skipped (``input()`` prepended): R2;
- ``syntax``: the target with an unmatched ``)`` appended: R1.

Three reward rules judge the same candidates, side by side in one run, interleaved: the pairs go in chunks,
and every chunk is judged by each rule in turn, in a rotating order, so the other tenants' load hits all
three alike.

- ``seed``: the seed's rule. Every program (the slow one once per pair, then each candidate) runs once per
  test in a fresh interpreter, wall time summed over the tests; faster = any improvement. The programs run
  inside bubblewrap (``reward_reliability.FreshInterpreterSandbox``).
- ``old_default``: ``Executor`` with ``ExecutionConfig(sequential_timing=False)``: today's rule until this
  change (5 timed trials of every passing candidate, 5 paired trials of each program for an apparent win).
- ``new_default``: ``Executor`` with the default ``ExecutionConfig()`` (sequential timing).

Throughput is candidates judged per **core-second**: the CPU time of this process (the judging threads)
plus every process under the rule's sandboxes (read from ``/proc`` for the executors' long-lived workers;
for the seed's sandboxes, which exit after each batch, the harness reports its own and its interpreters'
CPU time as its last act). Sandbox start-up is
outside the measurement (a training run pays it once); the slow program's timing is inside it (once per
pair for every rule).

Fidelity, per rule:
- ``false_r4``: the ``self`` candidate judged R4, over the pairs whose slow program passes;
- ``detected_at_1_25``: the target judged R4, over the pairs whose target passes and is at least 1.25x
  faster by a reference measurement with many trials (``--ref-trials`` runs of each program alternated on
  one worker, ratio of medians), taken after the rules on each chunk and not counted in any rule.

Usage:
    python benchmarks/reward_throughput.py                     # 40 pairs, about 3 minutes on a quiet machine
    python benchmarks/reward_throughput.py --n-pairs 8         # quick look
    python benchmarks/reward_throughput.py --n-pairs 120 --out benchmarks/results/reward_throughput.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from executor_overhead import _sandbox_cpu
from reward_reliability import HARNESS, PIE_DIR, FreshInterpreterSandbox, _fresh_outcome, load_sample

from perfrl_trl.execution import ExecutionConfig, Executor, Tier
from perfrl_trl.execution.sandbox import SandboxError
from perfrl_trl.execution.timing import DECISIVE_MIN_BASELINE_S
from perfrl_trl.reporting import provenance

RULES = ("seed", "old_default", "new_default")
ROLES = ("self", "target", "broken", "syntax")
POOLED = ("seed", "new_default")  # the rules --pool compares with the old default


def make_candidates(pair: dict) -> dict[str, str]:
    """The four candidates of a pair (see the module docstring)."""
    target = pair["target"]
    return {
        "self": pair["copy"],
        "target": target,
        "broken": "input()\n" + target,
        "syntax": target.rstrip() + "\n)\n",
    }


# The CPU the harness and every interpreter it started used, reported on stderr as the batch's last line:
# bubblewrap's processes are not waited for by this process, so RUSAGE_CHILDREN here never sees them.
CPU_EPILOGUE = r"""
import resource as _r
_s, _c = _r.getrusage(_r.RUSAGE_SELF), _r.getrusage(_r.RUSAGE_CHILDREN)
sys.stderr.write("\nPERFRL_CPU " + json.dumps(_s.ru_utime + _s.ru_stime + _c.ru_utime + _c.ru_stime) + "\n")
"""


class SeedRule:
    """The seed's rule: one fresh interpreter per test, one run, wall time, no margin."""

    def __init__(self, config: ExecutionConfig):
        self.config = config
        self.prefix = FreshInterpreterSandbox(config).prefix
        self.sandbox_cpu = 0.0

    def cpu(self) -> float:
        return time.process_time() + self.sandbox_cpu

    def _run_batch(self, jobs: list[dict]) -> dict:
        """``FreshInterpreterSandbox.run_batch`` with the harness's CPU report (same harness, same limits)."""
        cfg = self.config
        payload = {
            "jobs": jobs,
            "timeout": cfg.timeout_s,
            "output_cap": cfg.output_limit_bytes,
            "rlimits": {k: v for k, v in cfg.rlimits().items() if k != "RLIMIT_NPROC"},
            "python_args": [],
        }
        cmd = [*self.prefix, "--", sys.executable, "-I", "-c", HARNESS + CPU_EPILOGUE]
        proc = subprocess.run(
            cmd,
            input=json.dumps(payload).encode("utf-8", "surrogatepass"),
            capture_output=True,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
            start_new_session=True,
        )
        results = {}
        for line in proc.stdout.decode().splitlines():
            rec = json.loads(line)
            results[rec["id"]] = rec["reps"]
        report = [
            ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.startswith("PERFRL_CPU ")
        ]
        if len(results) != len(jobs) or not report:
            raise RuntimeError(
                f"harness sandbox stopped after {len(results)}/{len(jobs)} jobs: {proc.stderr[-2000:]!r}"
            )
        self.sandbox_cpu += float(report[-1].split()[1])
        return results

    def judge(self, pairs: list[dict]) -> list[dict[str, dict]]:
        jobs = []
        for k, pair in enumerate(pairs):
            inputs = [t["input"] for t in pair["tests"]]
            programs = {"slow": pair["slow"], **make_candidates(pair)}
            jobs += [
                {"id": f"{k}:{role}", "code": code, "inputs": inputs, "repeats": 1}
                for role, code in programs.items()
            ]
        n_boxes = self.config.num_workers
        batches = [jobs[i::n_boxes] for i in range(n_boxes) if jobs[i::n_boxes]]
        raw: dict = {}
        with ThreadPoolExecutor(len(batches)) as pool:
            for result in pool.map(self._run_batch, batches):
                raw.update(result)
        out = []
        for k, pair in enumerate(pairs):
            slow = _fresh_outcome(raw[f"{k}:slow"], pair["tests"], self.config.float_tol)
            slow_t = slow["totals"][0] if slow["totals"] else None
            verdicts = {}
            for role in ROLES:
                reps = raw[f"{k}:{role}"]
                o = _fresh_outcome(reps, pair["tests"], self.config.float_tol)
                t = o["totals"][0] if o["totals"] else None
                first = reps[0] if reps and reps[0] else [{}]
                syntax = "SyntaxError" in first[0].get("stderr", "")
                faster = o["passed"] and slow_t is not None and t is not None and t < slow_t
                tier = Tier.R4 if faster else Tier.R3 if o["passed"] else Tier.R1 if syntax else Tier.R2
                verdicts[role] = {"tier": tier, "passed": o["passed"], "slow_ok": slow["passed"]}
            out.append(verdicts)
        return out


class ExecutorRule:
    """Our executor with a given configuration; one long-lived pool for the whole benchmark."""

    def __init__(self, config: ExecutionConfig):
        self.config = config
        self.ex = Executor(config)
        # Start (and calibrate) every worker before anything is measured: a training run pays this once.
        warm = [
            (f"print(input())  # warm-up {i}\n", [{"input": "1\n", "output": "1\n"}], None) for i in range(8)
        ]
        self.ex.judge_many(warm, time_it=False)

    def cpu(self) -> float:
        return time.process_time() + _sandbox_cpu(self.ex)

    def judge(self, pairs: list[dict]) -> list[dict[str, dict]]:
        jobs = []
        for pair in pairs:
            for code in make_candidates(pair).values():
                jobs.append((code, pair["tests"], pair["slow"]))
        verdicts = self.ex.judge_many(jobs)
        out = []
        for k in range(len(pairs)):
            per_pair = {}
            for j, role in enumerate(ROLES):
                v = verdicts[len(ROLES) * k + j]
                per_pair[role] = {
                    "tier": v.tier,
                    "passed": v.passed,
                    "slow_ok": v.baseline_status == "passed",
                    "speedup": v.speedup,
                    "decisive": v.faster and v.p_value is None,
                    "trials": len(v.trials),
                    "baseline_trials": len(v.baseline_trials),
                }
            out.append(per_pair)
        return out

    def close(self) -> None:
        self.ex.close()


def reference_speedups(ex: Executor, pairs: list[dict], n_trials: int) -> list[dict | None]:
    """Target against slow program, ``n_trials`` runs each alternated on one worker; ratio of the medians.

    Also returns each program's runs, whose spread (slowest over fastest run of one program) is the noise
    that ``decisive_speedup`` must stay beyond. Reads the executor's private helpers (``_check``,
    ``_one_worker``), a benchmark's licence.
    """

    def one(pair: dict) -> dict | None:
        tests = pair["tests"]
        if not (ex._check(pair["slow"], tests).passed and ex._check(pair["target"], tests).passed):
            return None
        cand, base = [], []
        try:
            with ex._one_worker(tests) as run:
                for _ in range(n_trials):
                    cand.append(run(pair["target"]))
                    base.append(run(pair["slow"]))
        except SandboxError:  # a run over its limits under load: no reference, out of the detection set
            return None
        speedup = statistics.median(base) / max(statistics.median(cand), 1e-9)
        return {"speedup": speedup, "slow_runs": base, "target_runs": cand}

    with ThreadPoolExecutor(ex.config.num_workers) as pool:
        return list(pool.map(one, pairs))


def run_spread(references: list[dict | None], min_s: float = DECISIVE_MIN_BASELINE_S) -> dict:
    """Slowest over fastest run of one program, over the reference programs whose fastest run is >= min_s."""
    spreads = [
        max(runs) / min(runs)
        for r in references
        if r is not None
        for runs in (r["slow_runs"], r["target_runs"])
        if min(runs) >= min_s
    ]
    return {
        "min_run_s": min_s,
        "n_programs": len(spreads),
        "max": max(spreads, default=None),
        "median": statistics.median(spreads) if spreads else None,
    }


def summarise(
    records: list[dict], ref: list[float | None], n_candidates: int, core_s: float, wall_s: float
) -> dict:
    self_pairs = [r for r in records if r["self"]["slow_ok"] and r["self"]["passed"]]
    false_r4 = sum(r["self"]["tier"] == 4 for r in self_pairs)
    fast = [
        r
        for r, s in zip(records, ref)
        if s is not None and s >= 1.25 and r["target"]["passed"] and r["target"]["slow_ok"]
    ]
    detected = sum(r["target"]["tier"] == 4 for r in fast)
    tiers = {
        role: dict(sorted(Counter(Tier(r[role]["tier"]).name for r in records).items())) for role in ROLES
    }
    return {
        "candidates_per_core_s": n_candidates / core_s if core_s > 0 else None,
        "candidates": n_candidates,
        "core_s": core_s,
        "wall_s": wall_s,
        "false_r4": false_r4 / len(self_pairs) if self_pairs else None,
        "n_false_r4": false_r4,
        "n_self_pairs": len(self_pairs),
        "detected_at_1_25": detected / len(fast) if fast else None,
        "n_detected_at_1_25": detected,
        "n_targets_at_1_25": len(fast),
        "tiers": tiers,
        # R4 without paired runs (ExecutionConfig.decisive_speedup); the seed's rule has no such notion.
        "n_decisive_r4": sum(r[role].get("decisive", False) for r in records for role in ROLES),
    }


def ratio_interval(
    per_chunk: list[dict], rule: str, reference: str = "old_default", n_boot: int = 5000
) -> dict:
    """Throughput of ``rule`` over ``reference`` (their core-seconds on the same candidates), with a 95% interval.

    The chunks are the resampling unit (a percentile bootstrap over them): each holds the same pairs for every
    rule, judged back to back, so a chunk's load and its programs hit both sides of the ratio alike.
    """
    ref = [c[reference] for c in per_chunk]
    own = [c[rule] for c in per_chunk]
    rng = random.Random(0)
    boots = []
    for _ in range(n_boot):
        idx = [rng.randrange(len(per_chunk)) for _ in per_chunk]
        boots.append(sum(ref[i] for i in idx) / max(sum(own[i] for i in idx), 1e-12))
    boots.sort()
    return {
        "ratio": sum(ref) / max(sum(own), 1e-12),
        "ci95": [boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]],
        "n_chunks": len(per_chunk),
    }


def ratios_line(per_chunk: list[dict], rules: tuple[str, ...]) -> str:
    """``rule ratio [lo, hi]`` against the old default, for each of ``rules``."""
    parts = []
    for name in rules:
        r = ratio_interval(per_chunk, name)
        parts.append(f"{name} {r['ratio']:.2f}x [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]")
    return ", ".join(parts)


def pool(paths: list[Path]) -> None:
    """Print each saved run's ratios with intervals, and the runs pooled (their chunks together)."""
    chunks = []
    for path in paths:
        run = json.loads(path.read_text())
        chunks += run["core_s_per_chunk"]
        print(
            f"{path}: {run['n_pairs']} pairs, vs old_default: " + ratios_line(run["core_s_per_chunk"], POOLED)
        )
    print(f"pooled, {len(chunks)} chunks: vs old_default: " + ratios_line(chunks, POOLED))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-pairs", type=int, default=40, help="PIE pairs in the sample (default 40)")
    parser.add_argument(
        "--seed", type=int, default=0, help="sample seed (the same sample as reward_reliability)"
    )
    parser.add_argument("--chunk", type=int, default=2, help="pairs judged by each rule in turn (default 2)")
    parser.add_argument("--ref-trials", type=int, default=9, help="runs of each program in the reference")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers per rule (default: cores)")
    parser.add_argument("--pie-dir", type=Path, default=PIE_DIR)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument(
        "--pool", type=Path, nargs="+", default=None, help="only summarise saved --out files, each and pooled"
    )
    args = parser.parse_args()
    if args.pool:
        pool(args.pool)
        return
    if not (args.pie_dir / "py_test_pairs.jsonl").is_file():
        raise SystemExit(f"needs the PIE data in {args.pie_dir} (see its README); nothing to measure")

    base = ExecutionConfig(workers=args.workers)
    pairs = load_sample(args.pie_dir, args.n_pairs, args.seed)
    configs = {"old_default": replace(base, sequential_timing=False), "new_default": base}
    rules = {"seed": SeedRule(base), **{name: ExecutorRule(cfg) for name, cfg in configs.items()}}
    ref_ex = Executor(replace(base, sequential_timing=False, n_trials=args.ref_trials))
    records: dict[str, list] = {name: [] for name in RULES}
    core_s = dict.fromkeys(RULES, 0.0)
    wall_s = dict.fromkeys(RULES, 0.0)
    ref: list[float | None] = []
    references: list[dict | None] = []
    per_chunk: list[dict] = []
    chunks = [pairs[i : i + args.chunk] for i in range(0, len(pairs), args.chunk)]
    started = time.perf_counter()
    commit = provenance()["commit"]  # now: the checkout may move while this runs
    try:
        for c, chunk in enumerate(chunks):
            order = RULES[c % len(RULES) :] + RULES[: c % len(RULES)]
            per_chunk.append({"pairs": [p["index"] for p in chunk], "order": list(order)})
            for name in order:
                rule = rules[name]
                cpu0, t0 = rule.cpu(), time.perf_counter()
                records[name] += rule.judge(chunk)
                spent = rule.cpu() - cpu0
                core_s[name] += spent
                wall_s[name] += time.perf_counter() - t0
                per_chunk[-1][name] = spent
            measured_chunk = reference_speedups(ref_ex, chunk, args.ref_trials)
            references += measured_chunk
            ref += [None if r is None else r["speedup"] for r in measured_chunk]
            done = sum(len(x) for x in chunks[: c + 1])
            if args.out is not None:
                # A partial result after every chunk, so that a run cut short still says something.
                partial = {
                    name: summarise(records[name], ref, len(ROLES) * done, core_s[name], wall_s[name])
                    for name in RULES
                }
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(
                    json.dumps({"partial": True, "n_pairs_done": done, "rules": partial}, indent=1)
                )
            rates = "  ".join(f"{n} {len(ROLES) * done / max(core_s[n], 1e-9):.2f}/core-s" for n in RULES)
            print(f"[{time.perf_counter() - started:6.0f} s] {done}/{len(pairs)} pairs  {rates}", flush=True)
    finally:
        for rule in rules.values():
            if isinstance(rule, ExecutorRule):
                rule.close()
        ref_ex.close()

    n_candidates = len(ROLES) * len(pairs)
    summary = {
        name: summarise(records[name], ref, n_candidates, core_s[name], wall_s[name]) for name in RULES
    }
    measured = [s for s in ref if s is not None]
    bins = Counter(
        "<1.0" if s < 1.0 else "1.0-1.1" if s < 1.1 else "1.1-1.25" if s < 1.25 else ">=1.25"
        for s in measured
    )
    old = summary["old_default"]["candidates_per_core_s"]

    def pct(x):
        return "  n/a" if x is None else f"{100 * x:5.1f}%"

    print(
        f"\n{len(pairs)} PIE pairs, {n_candidates} candidates per rule; reference speed-ups of the targets "
        f"({args.ref_trials} paired runs each): {dict(sorted(bins.items()))}\n"
    )
    header = f"{'rule':<12} {'cand/core-s':>11} {'vs old':>7} {'core-s':>8} {'wall s':>7}  {'false R4':>16}  {'detected @1.25x':>18}"
    print(header)
    print("-" * len(header))
    for name in RULES:
        s = summary[name]
        ratio = s["candidates_per_core_s"] / old if old else math.nan
        print(
            f"{name:<12} {s['candidates_per_core_s']:>11.2f} {ratio:>6.2f}x {s['core_s']:>8.1f} {s['wall_s']:>7.1f}  "
            f"{pct(s['false_r4'])} ({s['n_false_r4']:>2}/{s['n_self_pairs']:<3})  "
            f"{pct(s['detected_at_1_25'])} ({s['n_detected_at_1_25']:>2}/{s['n_targets_at_1_25']:<3})"
        )
    intervals = {name: ratio_interval(per_chunk, name) for name in RULES}
    print("vs old_default, 95% intervals by a bootstrap over the chunks: " + ratios_line(per_chunk, POOLED))
    print("\nTiers per candidate role:")
    for name in RULES:
        print(f"  {name:<12} " + "  ".join(f"{role}: {summary[name]['tiers'][role]}" for role in ROLES))
    agree = sum(
        a[role]["tier"] == b[role]["tier"]
        for a, b in zip(records["old_default"], records["new_default"])
        for role in ROLES
    )
    print(f"\nold_default and new_default give the same tier to {agree}/{n_candidates} candidates")
    spread = run_spread(references)
    print(
        f"new_default granted {summary['new_default']['n_decisive_r4']} R4 as decisive wins (no paired runs). "
        f"Noise they must stay beyond: over the {spread['n_programs']} reference programs whose fastest run "
        f"took >= {1000 * spread['min_run_s']:.0f} ms, slowest / fastest of one program's "
        f"{args.ref_trials} runs: median {spread['median'] or math.nan:.2f}, largest {spread['max'] or math.nan:.2f}"
    )
    for name in ("old_default", "new_default"):
        print(f"  {name} executor stats: {rules[name].ex.stats}")

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        version = commit
        result = {
            "code_version": version,
            "n_pairs": len(pairs),
            "seed": args.seed,
            "chunk": args.chunk,
            "ref_trials": args.ref_trials,
            "wall_s": time.perf_counter() - started,
            "rules": summary,
            "executor_stats": {name: rules[name].ex.stats for name in configs},
            "same_tier_old_new": agree,
            "ratio_vs_old": intervals,
            "run_spread": spread,
            "core_s_per_chunk": per_chunk,
            "pairs": [
                {
                    "index": p["index"],
                    "problem_id": p["problem_id"],
                    "reference_speedup": s,
                    **{name: {role: records[name][k][role]["tier"] for role in ROLES} for name in RULES},
                }
                for k, (p, s) in enumerate(zip(pairs, ref))
            ],
        }
        args.out.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
