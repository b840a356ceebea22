"""Two checkpoints judged together on the same problems of the benchmark's held-out splits, paired.

The package stage of `examples/pretrain_checkpoint.py` judges one model; this judges two (by default the bundled
T5 and a candidate: a folder, a Hub id or a bundled name such as `bundled-causal`) on the same rows, in one run
on one executor, so that their pass and %OPT can be compared problem by problem (exact McNemar). The rows are
the package stage's: the evaluation benchmark (`eval_per_family` problems per family, the evaluation seed), each
split shuffled with `--seed` and its first `--test` / `--test_ood` rows taken. Decoding: beam 4, best of 2, the margin and trials of
`RRHFConfig`'s defaults, prompts and programs up to `--max_length` tokens.

Usage:
    python benchmarks/checkpoint_pair.py bundled-causal --test 100 --test_ood 60 \
        --out docs/results/pretrain-real-decoder-vs-shipped.json
"""

from __future__ import annotations

import argparse
import json
import tempfile

from perfrl_trl.comparison import evaluate_models, paired_tests
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.data.benchmark.pretraining import EVAL_SEED
from perfrl_trl.models import resolve_checkpoint
from perfrl_trl.trainer import RRHFConfig


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "candidate", help="The checkpoint to judge against --baseline (folder, Hub id, or 'bundled-causal')."
    )
    parser.add_argument("--baseline", default="bundled", help="Default: the bundled T5 ('bundled').")
    parser.add_argument("--test", type=int, default=100, help="Rows of the test split (0: none).")
    parser.add_argument("--test_ood", type=int, default=60, help="Rows of the test_ood split (0: none).")
    parser.add_argument("--eval_per_family", type=int, default=100)
    parser.add_argument("--max_length", type=int, default=512, help="Prompt and program tokens.")
    parser.add_argument("--seed", type=int, default=42, help="The rows' shuffle (the package stage's seed).")
    parser.add_argument("--out", default=None, help="JSON: summaries, paired tests, per-problem outcomes.")
    args = parser.parse_args()

    config = RRHFConfig(
        output_dir=tempfile.mkdtemp(),
        report_to="none",
        max_prompt_length=args.max_length,
        max_completion_length=args.max_length,
        seed=args.seed,
    )
    bench = build_benchmark(n_per_family=args.eval_per_family, seed=EVAL_SEED)
    models = {"candidate": args.candidate, "baseline": args.baseline}
    paths = {name: resolve_checkpoint(model) for name, model in models.items()}  # a bundled name: its folder
    report = {"models": models, "settings": vars(args), "splits": {}}
    for split, n in (("test", args.test), ("test_ood", args.test_ood)):
        if n <= 0:
            continue
        rows = bench[split].shuffle(seed=args.seed).select(range(min(n, len(bench[split]))))
        evals = evaluate_models(paths, rows, config, compare_to_target=False)
        tests = paired_tests(evals["candidate"], evals["baseline"])
        report["splits"][split] = {
            "paired": tests,
            **{name: e.to_dict() for name, e in evals.items()},
        }
        for name, e in evals.items():
            s = e.summary
            print(
                f"{split:8s} {name:9s} n={s['n_samples']}  pass {s['percent_passed']:.1f}% "
                f"[{s['percent_passed_ci'][0]:.1f}, {s['percent_passed_ci'][1]:.1f}]  "
                f"%OPT {s['percent_optimized']:.1f}  compile {s['percent_compiled']:.1f}"
            )
        print(
            f"{split:8s} pass: candidate only {tests['pass_only_a']}, baseline only {tests['pass_only_b']}, "
            f"McNemar p = {tests['pass_p']:.3g};  %OPT: {tests['opt_only_a']} vs {tests['opt_only_b']}, "
            f"p = {tests['opt_p']:.3g}"
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
