"""What `perfrl-trl optimize` finds on PIE's evaluation half: the model's candidates and the generic rewrites.

Runs `optimize_dataset` (the CLI's loop: greedy and `--samples` samples of up to 512 new tokens, then the
library's generic rewrites of each program, all verified in the sandbox with 3 timed trials and the 1.10 margin)
on every distinct slow program of PIE's evaluation half that passes its own public tests (the package stage's
programs; `--limit` takes the first N of them shuffled with `--seed`). It prints how many programs got a
verified faster version, split by where the best one came from, and, per rewrite, on how many programs it
applied and was verified faster (R4). Needs `../shared/pie`; nothing is downloaded.

Usage:
    python benchmarks/optimize_pie.py --out docs/results/optimize-pie.json     # the CLI's defaults
    python benchmarks/optimize_pie.py --model none                              # the generic rewrites alone
    python benchmarks/optimize_pie.py --no_rewrites --limit 40                  # the model alone
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from perfrl_trl.data import load_pie_programs
from perfrl_trl.execution import ExecutionConfig, Executor
from perfrl_trl.inference import optimize_dataset
from perfrl_trl.metrics.intervals import wilson_interval
from perfrl_trl.models import BUNDLED_CHECKPOINT

PIE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "pie"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pie_dir", default=str(PIE_DIR))
    parser.add_argument(
        "--model", default=str(BUNDLED_CHECKPOINT), help="Default: the shipped checkpoint; 'none': no model."
    )
    parser.add_argument("--samples", type=int, default=8, help="Samples per program, besides greedy.")
    parser.add_argument("--no_rewrites", action="store_true", help="The model's candidates only.")
    parser.add_argument("--limit", type=int, default=None, help="The first N programs, shuffled with --seed.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument(
        "--out", default=None, help="JSON: the settings, the counts and every program's outcome."
    )
    args = parser.parse_args()
    model = None if args.model.lower() == "none" else args.model
    if model is None and args.no_rewrites:
        parser.error("--model none with --no_rewrites leaves nothing to try")
    if not (Path(args.pie_dir) / "py_test_pairs.jsonl").is_file():
        parser.error(f"no PIE data at {args.pie_dir} (py_test_pairs.jsonl): see docs/recipes/pie.md")

    executor = Executor(ExecutionConfig(n_trials=args.trials))
    try:
        programs, counts = load_pie_programs(args.pie_dir, "eval", executor=executor)
        if args.limit is not None and args.limit < len(programs):
            programs = programs.shuffle(seed=args.seed).select(range(args.limit))
        report = optimize_dataset(
            programs,
            model,
            n=args.samples,
            rewrites=not args.no_rewrites,
            executor=executor,
            seed=args.seed,
        )
    finally:
        executor.close()

    n, found = report["programs"], report["found"]
    lo, hi = wilson_interval(found, n)
    print(f"PIE evaluation half: {counts}; judged {n}")
    print(
        f"verified faster: {found} of {n} ({100 * found / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]); "
        f"best from the model {report['found_by_model']}, from a generic rewrite {report['found_by_rewrite']}"
    )
    if report["candidate_compile_rate"] is not None:
        print(f"the model's candidates that compile: {100 * report['candidate_compile_rate']:.1f}%")
    applied, verified = Counter(), Counter()
    for outcome in report["outcomes"]:
        for label, tier in outcome["rewrites"].items():
            applied[label] += 1
            verified[label] += tier == "R4"
    for label in sorted(applied, key=lambda k: (-verified[k], -applied[k], k)):
        print(f"  {label:60s} applies to {applied[label]:4d}, verified faster on {verified[label]:4d}")
    if args.out:
        settings = {**vars(args), "model": model}
        with open(args.out, "w") as fh:
            json.dump({"settings": settings, "counts": counts, **report}, fh, indent=1)


if __name__ == "__main__":
    main()
