"""Instruction counts against CPU time, side by side, on real PIE pairs and on the bundled benchmark's pairs.

Every pair (slow ``input``, fast ``target``, public tests) is judged twice in one run, by two executors with one
sandbox worker each: ``ExecutionConfig()`` (CPU time, the sequential timing rule) and
``ExecutionConfig(cost="instructions")`` (one valgrind count per test, start-up left out). Reported:

- **agreement**: Spearman's rank correlation of the log instruction ratio (slow / target) with the log CPU-time
  ratio (medians of five timed runs a side, ``sequential_timing=False``), over the pairs where both programs
  pass; and how often the two modes agree on R4, over all of them and
  where the timing is confident (both timing rules agree, at a five-run CPU speed-up of at least 1.25 for R4
  or at most 1.0 for no R4);
- **cost**: the CPU seconds of every process involved (this one and every sandbox process below it, read from
  ``/proc``, so other tenants' load does not enter) per judgement: the first candidate of a row, which pays for
  its baseline too, and a second one with the baseline cached (the target plus a comment: a distinct program
  that runs the same), the steady state of RL; and how that grows with a program's run length, on a synthetic
  loop of growing size and by bins of the PIE baselines' CPU time;
- **determinism**: the first ``--repeat`` PIE pairs judged again in instructions mode by a fresh executor (new
  workers, new calibration): every count, %OPT and SP must be identical; and the target's count against its
  copy's (the comment is compiled before the count starts, so they should match too).

PIE pairs come from the evaluation half (``split_of``), a deterministic sample of ``--limit``; bundled pairs are
``generate_problems(n_per_family=1)``'s first ``--bundled-limit``. Needs valgrind and ``../shared/pie``.

Usage:
    nice -n 10 python benchmarks/instruction_cost.py --limit 30 --bundled-limit 12 --repeat 8 \\
        --out benchmarks/results/instruction_cost.json
    python benchmarks/instruction_cost.py --limit 3 --bundled-limit 2 --repeat 1 --sizes 1000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

from perfrl_trl.data.benchmark.build import generate_problems
from perfrl_trl.data.pie import read_pairs, read_tests, split_of
from perfrl_trl.execution import ExecutionConfig, Executor
from perfrl_trl.metrics.arithmetic import SampleResult, aggregate
from perfrl_trl.reporting import provenance

ROOT = Path(__file__).resolve().parents[1]
PIE_DIR = ROOT.parent / "shared" / "pie"
COPY_SUFFIX = "\n# perfrl benchmark: the same program again\n"
_TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------------------
# CPU seconds of this process and everything below it
# --------------------------------------------------------------------------------------------------------
def _stat(pid: str) -> tuple[int, float] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the command: state, ppid, ..., utime (14th field overall), stime, cutime, cstime.
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / _TICK


def tree_cpu_s() -> float:
    """CPU seconds of this process and of every live descendant, each with its reaped children.

    A process's reaped children are in its ``cutime``/``cstime`` and gone from ``/proc``, so nothing is counted
    twice; a sandbox run is reaped by its worker as soon as it ends.
    """
    stats = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            found = _stat(pid)
            if found is not None:
                stats[int(pid)] = found
    me = os.getpid()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [me]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


_JUDGING_CPU_S = [0.0]


def judged(ex: Executor, program: str, tests: list[dict], baseline: str) -> tuple[object, float]:
    """The verdict and the CPU seconds it cost (this process and its sandbox processes)."""
    before = tree_cpu_s()
    verdict = ex.judge(program, tests, baseline)
    spent = tree_cpu_s() - before
    _JUDGING_CPU_S[0] += spent
    return verdict, spent


# --------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------
def pie_pairs(limit: int, seed: int) -> list[dict]:
    rows = [
        row for _, row in read_pairs(PIE_DIR / "py_test_pairs.jsonl") if split_of(row["problem_id"]) == "eval"
    ]
    picked = sorted(random.Random(seed).sample(range(len(rows)), min(limit, len(rows))))
    tests: dict[str, list[dict]] = {}
    out = []
    for i in picked:
        row = rows[i]
        pid = row["problem_id"]
        if pid not in tests:
            tests[pid] = read_tests(PIE_DIR / "public_test_cases", pid)
        out.append(
            {"source": "pie", "id": row.get("submission_id_v0", str(i)), "problem_id": pid,
             "slow": row["input"], "target": row["target"], "tests": tests[pid]}
        )  # fmt: skip
    return out


def bundled_pairs(limit: int) -> list[dict]:
    return [
        {"source": "bundled", "id": p["problem_id"], "problem_id": p["problem_id"], "slow": p["input_code"],
         "target": p["target_code"], "tests": p["tests"]}
        for p in generate_problems(n_per_family=1, seed=0)[:limit]
    ]  # fmt: skip


def loop_program(kind: str) -> str:
    body = "    s += i * i % 7\n"
    if kind == "slow":  # module level: every name a dictionary lookup
        return "n = int(input())\ns = 0\nfor i in range(n):\n" + body + "print(s)\n"
    # The same loop in a function (local names): about 1.5x faster in CPython, in both measures.
    return (
        "def main():\n    n = int(input())\n    s = 0\n    for i in range(n):\n    "
        + body
        + "    print(s)\nmain()\n"
    )


# --------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------
def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    sy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (sx * sy) if sx and sy else None


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------
def judge_pair(pair: dict, timing: Executor, counting: Executor, fixed: Executor) -> dict:
    tests, slow, target = pair["tests"], pair["slow"], pair["target"]
    copy = target + COPY_SUFFIX
    rec = {k: pair[k] for k in ("source", "id", "problem_id")}
    rec["n_tests"] = len(tests)
    # The CPU-time ratio itself, from the fixed rule (five timed runs a side, paired for an apparent win): the
    # sequential rule stops most candidates after one or two runs, the first of them a correctness run.
    v = fixed.judge(target, tests, slow)
    rec["cpu_time_fixed"] = {"tier": v.tier_name, "speedup": v.speedup, "p_value": v.p_value}
    for mode, ex in (("cpu_time", timing), ("instructions", counting)):
        first, first_s = judged(ex, target, tests, slow)
        second, second_s = judged(ex, copy, tests, slow)
        rec[mode] = {
            "tier": first.tier_name, "speedup": first.speedup, "runtime": first.runtime,
            "baseline_runtime": first.baseline_runtime, "baseline_status": first.baseline_status,
            "error": first.error, "core_s_first": first_s,
            "copy_tier": second.tier_name, "copy_speedup": second.speedup, "copy_runtime": second.runtime,
            "core_s_cached_baseline": second_s,
        }  # fmt: skip
    return rec


def summarise(records: list[dict], margin: float) -> dict:
    both = [
        r for r in records
        if r["cpu_time"]["speedup"] and r["instructions"]["speedup"] and r["instructions"]["runtime"]
    ]  # fmt: skip
    with_fixed = [r for r in both if r["cpu_time_fixed"]["speedup"]]
    log_cpu = [math.log(r["cpu_time_fixed"]["speedup"]) for r in with_fixed]
    log_ins = [math.log(r["instructions"]["speedup"]) for r in with_fixed]
    r4 = [(r["cpu_time"]["tier"] == "R4", r["instructions"]["tier"] == "R4") for r in both]

    def timing_confident(r):
        # Both timing rules agree, and the five-run ratio is clearly on one side of the margin's neighbourhood.
        t, f = r["cpu_time"]["tier"] == "R4", r["cpu_time_fixed"]
        if f["speedup"] is None or t != (f["tier"] == "R4"):
            return False
        return (t and f["speedup"] >= 1.25) or (not t and f["speedup"] <= 1.0)

    confident = [(t, c) for r, (t, c) in zip(both, r4) if timing_confident(r)]
    cost = {}
    for key in ("core_s_first", "core_s_cached_baseline"):
        t = [r["cpu_time"][key] for r in both]
        c = [r["instructions"][key] for r in both]
        ratios = [b / a for a, b in zip(t, c) if a > 0]
        cost[key] = {
            "cpu_time_mean_s": statistics.fmean(t) if t else None,
            "instructions_mean_s": statistics.fmean(c) if c else None,
            "ratio_of_means": (statistics.fmean(c) / statistics.fmean(t))
            if t and statistics.fmean(t)
            else None,
            "median_ratio": _median(ratios),
        }
    # Growth with run length: the cached-baseline cost ratio by the baseline's CPU time (summed over tests).
    bins = [(0, 0.01), (0.01, 0.05), (0.05, 0.2), (0.2, 1.0), (1.0, math.inf)]
    by_length = []
    for lo, hi in bins:
        inside = [r for r in both if lo <= (r["cpu_time"]["baseline_runtime"] or 0) < hi]
        if not inside:
            continue
        t = statistics.fmean(r["cpu_time"]["core_s_cached_baseline"] for r in inside)
        c = statistics.fmean(r["instructions"]["core_s_cached_baseline"] for r in inside)
        by_length.append(
            {"baseline_cpu_s": [lo, None if math.isinf(hi) else hi], "n": len(inside),
             "cpu_time_core_s": t, "instructions_core_s": c, "ratio": c / t if t else None}
        )  # fmt: skip
    return {
        "n_pairs": len(records),
        "n_both_measured": len(both),
        "spearman_log_ratio": spearman(log_ins, log_cpu),
        "spearman_log_ratio_sequential_rule": spearman(
            [math.log(r["instructions"]["speedup"]) for r in both],
            [math.log(r["cpu_time"]["speedup"]) for r in both],
        ),
        "r4_agreement": sum(t == c for t, c in r4) / len(r4) if r4 else None,
        "r4_cpu_time": sum(t for t, _ in r4),
        "r4_instructions": sum(c for _, c in r4),
        "n_timing_confident": len(confident),
        "r4_agreement_where_timing_confident": (
            sum(t == c for t, c in confident) / len(confident) if confident else None
        ),
        "disagreements": [
            {
                "id": r["id"],
                "cpu_speedup": r["cpu_time"]["speedup"],
                "cpu_tier": r["cpu_time"]["tier"],
                "cpu_fixed_speedup": r["cpu_time_fixed"]["speedup"],
                "timing_confident": timing_confident(r),
                "instr_speedup": r["instructions"]["speedup"],
                "instr_tier": r["instructions"]["tier"],
            }
            for r, (t, c) in zip(both, r4)
            if t != c
        ],
        "copy_count_equals_target_count": sum(
            r["instructions"]["copy_runtime"] == r["instructions"]["runtime"] for r in both
        ),
        "core_seconds": cost,
        "core_seconds_by_baseline_length": by_length,
        "margin": margin,
    }


def synthetic(sizes: list[int], margin: float) -> list[dict]:
    """Cost per candidate with a cached baseline, by run length: a loop, its copy, and a faster version."""
    out = []
    slow, fast = loop_program("slow"), loop_program("fast")
    for n in sizes:
        tests = [{"input": f"{n}\n", "output": f"{sum(i * i % 7 for i in range(n))}\n"}]
        row = {"n": n}
        for mode, config in (("cpu_time", ExecutionConfig(workers=1)),
                             ("instructions", ExecutionConfig(workers=1, cost="instructions"))):  # fmt: skip
            with Executor(config) as ex:
                _, base_s = judged(ex, slow + "\n# baseline\n", tests, slow)  # times the baseline once
                copy, copy_s = judged(ex, slow + COPY_SUFFIX, tests, slow)
                faster, faster_s = judged(ex, fast, tests, slow)
            row[mode] = {
                "baseline_runtime": copy.baseline_runtime, "core_s_first": base_s,
                "copy_core_s": copy_s, "copy_tier": copy.tier_name, "copy_speedup": copy.speedup,
                "faster_core_s": faster_s, "faster_tier": faster.tier_name, "faster_speedup": faster.speedup,
            }  # fmt: skip
        # /proc counts CPU time in ticks (10 ms): a judgement that took less than one has no ratio.
        for kind in ("copy", "faster"):
            cpu = row["cpu_time"][f"{kind}_core_s"]
            row[f"{kind}_ratio"] = row["instructions"][f"{kind}_core_s"] / cpu if cpu > 0 else None
        print(f"  n={n}: cpu {row['cpu_time']['baseline_runtime']:.4f} s  cost ratio copy "
              f"{row['copy_ratio']}x faster {row['faster_ratio']}x", flush=True)  # fmt: skip
        out.append(row)
    return out


def determinism(pairs: list[dict], records: list[dict], margin: float) -> dict:
    """The first pairs judged again in instructions mode by a fresh executor: every count, %OPT and SP."""
    again = []
    with Executor(ExecutionConfig(workers=1, cost="instructions")) as ex:
        for pair in pairs:
            again.append(ex.judge(pair["target"], pair["tests"], pair["slow"]))
    first = [r["instructions"] for r in records[: len(pairs)]]
    same = [
        (a["runtime"], a["baseline_runtime"], a["tier"]) == (b.runtime, b.baseline_runtime, b.tier_name)
        for a, b in zip(first, again)
    ]

    def table(rows):
        results = [[SampleResult(compiled=True, passed=r[0] is not None, old_time=r[1], new_time=r[0],
                                 significant=r[2] == "R4")] for r in rows]  # fmt: skip
        out = aggregate(results, margin=margin, n_bootstrap=200)
        return {"percent_optimized": out["percent_optimized"], "speedup": out["speedup"]}

    one = table([(a["runtime"], a["baseline_runtime"], a["tier"]) for a in first])
    two = table([(b.runtime, b.baseline_runtime, b.tier_name) for b in again])
    return {
        "n_pairs": len(pairs),
        "identical_verdicts": sum(same),
        "run1": one,
        "run2": two,
        "tables_identical": one == two,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--limit", type=int, default=30, help="PIE pairs (evaluation half), a deterministic sample"
    )
    ap.add_argument("--bundled-limit", type=int, default=12, help="bundled benchmark pairs (one per family)")
    ap.add_argument("--repeat", type=int, default=8, help="PIE pairs judged again in instructions mode")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000, 300_000],
                    help="loop sizes of the run-length series (none: skip it)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the results here (JSON)")
    args = ap.parse_args()
    if not PIE_DIR.is_dir():
        raise SystemExit(f"needs the PIE data in {PIE_DIR.relative_to(ROOT.parent)} (see its README)")
    started = time.time()
    commit = provenance()["commit"]  # now: the checkout may move while this runs
    margin = ExecutionConfig().margin
    timing = Executor(ExecutionConfig(workers=1))
    counting = Executor(ExecutionConfig(workers=1, cost="instructions"))
    fixed = Executor(ExecutionConfig(workers=1, sequential_timing=False))
    results: dict = {}
    records_by_source = {}
    pie = pie_pairs(args.limit, args.seed)
    for name, pairs in (("pie", pie), ("bundled", bundled_pairs(args.bundled_limit))):
        records = []
        for i, pair in enumerate(pairs):
            rec = judge_pair(pair, timing, counting, fixed)
            records.append(rec)
            t, c = rec["cpu_time"], rec["instructions"]
            print(f"{name} {i + 1}/{len(pairs)} {rec['id']}: cpu {t['tier']} {t['speedup'] or 0:.2f}x "
                  f"({t['core_s_cached_baseline']:.2f} s)  instr {c['tier']} {c['speedup'] or 0:.2f}x "
                  f"({c['core_s_cached_baseline']:.2f} s)  [{time.time() - started:.0f} s]", flush=True)  # fmt: skip
        records_by_source[name] = records
        results[name] = {"summary": summarise(records, margin), "pairs": records}
    counter = counting.counter
    timing.close()
    counting.close()
    fixed.close()
    results["run_length_series"] = synthetic(args.sizes, margin) if args.sizes else []
    results["determinism"] = determinism(pie[: args.repeat], records_by_source["pie"], margin)
    out = {
        "benchmark": "benchmarks/instruction_cost.py",
        "command": "python benchmarks/instruction_cost.py " + " ".join(sys.argv[1:]),
        "commit": commit,
        "cost_modes": ["cpu_time", "instructions"],
        "counter": counter,
        "cores": os.cpu_count(),
        "wall_s": time.time() - started,
        # CPU seconds of the judgements measured above (both modes; not the fixed-rule ratios, the recount or the
        # sandboxes' start-up): most of what the run costs on one core.
        "judging_cpu_s": _JUDGING_CPU_S[0],
        **results,
    }
    for name in ("pie", "bundled"):
        print(name, json.dumps(results[name]["summary"], indent=1))
    print("determinism", json.dumps(results["determinism"]))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
