"""A table anyone can reproduce: PIE's dataset targets judged in instructions mode, twice, in two processes at once.

The first ``--limit`` pairs of PIE's evaluation half (file order, ``split_of(problem_id) == "eval"``) are judged
target against slow program with ``ExecutionConfig(cost="instructions")`` by two separate processes running at
the same time (each loads the other: CPU time would move, counts must not). Each process reports every count,
and %OPT and SP (``perfrl_trl.metrics.aggregate``, PIE's definitions); the run checks that both processes agree
on every count and on the table to the last digit. Needs valgrind and ``../shared/pie``.

Usage:
    nice -n 10 python benchmarks/instruction_table.py --limit 24 --out benchmarks/results/instruction_table.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIE_DIR = ROOT.parent / "shared" / "pie"


def judge(limit: int, position: int) -> dict:
    """One process's judgements: per pair the verdict's counts and tier, then the table."""
    from tqdm.auto import tqdm

    from perfrl_trl.data.pie import read_pairs, read_tests, split_of
    from perfrl_trl.execution import ExecutionConfig, Executor
    from perfrl_trl.metrics.arithmetic import SampleResult, aggregate

    rows = [
        row for _, row in read_pairs(PIE_DIR / "py_test_pairs.jsonl") if split_of(row["problem_id"]) == "eval"
    ]
    pairs, results = [], []
    with Executor(ExecutionConfig(cost="instructions", workers=1)) as ex:
        for row in tqdm(rows[:limit], desc=f"process {position + 1}", position=position, leave=False):
            tests = read_tests(PIE_DIR / "public_test_cases", row["problem_id"])
            v = ex.judge(row["target"], tests, row["input"])
            pairs.append(
                {"id": row["submission_id_v0"], "tier": v.tier_name, "instructions": v.runtime,
                 "baseline_instructions": v.baseline_runtime, "baseline_status": v.baseline_status,
                 "speedup": v.speedup, "error": v.error}
            )  # fmt: skip
            results.append([SampleResult.from_verdict(v)])
        counter = ex.counter
    table = aggregate(results, n_bootstrap=1000)
    keep = (
        "percent_optimized",
        "percent_optimized_ci",
        "speedup",
        "speedup_ci",
        "percent_passed",
        "n_samples",
    )
    return {"counter": counter, "table": {k: table[k] for k in keep}, "pairs": pairs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=24, help="first pairs of PIE's evaluation half")
    ap.add_argument("--out", help="write the results here (JSON)")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # which of the two processes
    args = ap.parse_args()
    if args.worker is not None:
        print(json.dumps(judge(args.limit, args.worker)))
        return
    if not PIE_DIR.is_dir():
        raise SystemExit("needs the PIE data in ../shared/pie (see its README)")
    from perfrl_trl.reporting import provenance

    started = time.time()
    commit = provenance()["commit"]  # now: the checkout may move while this runs
    cmd = [sys.executable, __file__, "--limit", str(args.limit), "--worker"]
    procs = [subprocess.Popen([*cmd, str(i)], stdout=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a judging process failed (its error is above)")
    runs = [json.loads(output) for output in outputs]
    first, second = runs
    same = [a == b for a, b in zip(first["pairs"], second["pairs"])]
    out = {
        "benchmark": "benchmarks/instruction_table.py",
        "command": "python benchmarks/instruction_table.py " + " ".join(sys.argv[1:]),
        "commit": commit,
        "cost": "instructions",
        "counter": first["counter"],
        "wall_s": time.time() - started,
        "identical_pairs": sum(same),
        "n_pairs": len(same),
        "tables_identical": first["table"] == second["table"],
        "run1": first,
        "run2": second,
    }
    print(json.dumps({k: out[k] for k in ("identical_pairs", "n_pairs", "tables_identical", "wall_s")}))
    print("run1", json.dumps(first["table"]))
    print("run2", json.dumps(second["table"]))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
