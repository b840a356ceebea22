"""The bundled checkpoint's held-out table judged in both cost modes, side by side, on the same programs.

The rows are the main job's held-out problems (`build_benchmark(n_per_family=20, seed=0)`'s test split,
shuffled with `--seed`, its first `--n`); decoding is the evaluation's (beam 4, best of 2). The model's programs
are generated once per mode (beam search is deterministic, so they are the same) and judged with
`RRHFConfig(execution_cost="cpu_time")`, then `"instructions"` (valgrind). Printed: each mode's table and how
often the two modes agree per problem on pass, %OPT and beating the dataset's target.

Usage:
    python benchmarks/cost_modes_heldout.py --n 48 --out benchmarks/results/cost_modes_heldout.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from perfrl_trl.comparison import evaluate_models
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.data.benchmark.pretraining import EVAL_SEED
from perfrl_trl.models import BUNDLED_CHECKPOINT
from perfrl_trl.reporting import provenance
from perfrl_trl.trainer import RRHFConfig

MODES = ("cpu_time", "instructions")
ENDPOINTS = ("passed", "optimized", "beats_target")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="Held-out problems (the main job judges 48).")
    parser.add_argument("--seed", type=int, default=42, help="The rows' shuffle.")
    parser.add_argument("--out", default=None, help="JSON: both tables, agreement, per-problem outcomes.")
    args = parser.parse_args()

    test = build_benchmark(n_per_family=20, seed=EVAL_SEED)["test"]
    rows = test.shuffle(seed=args.seed).select(range(min(args.n, len(test))))
    report = {
        "benchmark": "cost_modes_heldout",
        "command": "python benchmarks/cost_modes_heldout.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None),
        "commit": provenance()["commit"],
        "model": "bundled",
        "n": len(rows),
        "modes": {},
    }
    evals = {}
    for mode in MODES:
        config = RRHFConfig(
            output_dir=tempfile.mkdtemp(),
            report_to="none",
            max_prompt_length=256,
            max_completion_length=256,
            execution_cost=mode,
        )
        start = time.perf_counter()
        evals[mode] = evaluate_models({"bundled checkpoint": str(BUNDLED_CHECKPOINT)}, rows, config)
        seconds = time.perf_counter() - start
        model, target = evals[mode]["bundled checkpoint"], evals[mode]["dataset target"]
        report["modes"][mode] = {
            "seconds": seconds,
            "bundled checkpoint": model.to_dict(),
            "dataset target": target.to_dict(),
        }
        s, t = model.summary, target.summary
        print(
            f"{mode:12s} {seconds:6.0f} s  checkpoint: pass {s['percent_passed']:.1f}%  %OPT "
            f"{s['percent_optimized']:.1f}%  SP {s.get('speedup')}  |  target: %OPT {t['percent_optimized']:.1f}%",
            flush=True,
        )
    by_mode = {m: {o.problem_id: o for o in evals[m]["bundled checkpoint"].outcomes} for m in MODES}
    agreement = {}
    for endpoint in ENDPOINTS:
        pairs = [
            (getattr(by_mode["cpu_time"][pid], endpoint), getattr(o, endpoint))
            for pid, o in by_mode["instructions"].items()
        ]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        agreement[endpoint] = {
            "same": sum(a == b for a, b in pairs),
            "n": len(pairs),
            "cpu_time_only": sum(a and not b for a, b in pairs),
            "instructions_only": sum(b and not a for a, b in pairs),
        }
        a = agreement[endpoint]
        print(f"{endpoint:13s} same in {a['same']}/{a['n']}; only CPU time {a['cpu_time_only']}, "
              f"only instructions {a['instructions_only']}")  # fmt: skip
    report["agreement"] = agreement
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
