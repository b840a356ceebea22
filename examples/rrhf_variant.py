"""One RRHF variant against a finished `--preset compare` run: same start, same wall time, same held-out problems.

    accelerate launch examples/train_pie.py --preset compare        # first: writes outputs/train_pie-compare
    python examples/rrhf_variant.py --rl_prompts 288 --rl_steps 1   # then: one variant of its RRHF stage

The compare run's SFT-only arm is not retrained: the variant's RRHF stage gets the same wall-clock budget as
that run's RRHF stage (which the SFT-only arm was given too), starts from the same checkpoint, and is judged on
the same 507 held-out problems, so its per-problem outcomes pair with the saved ones (the exact McNemar test;
the programs were judged in two sessions, so the timing side of %OPT carries that session's noise too). Every
setting not given on the command line is the compare preset's (`train_pie.preset_defaults("compare")`).
Writes `<compare_dir>/variant-<name>/results.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields

from train_pie import SFT_ONLY, preset_defaults  # this script's folder is on sys.path when it runs
from trl import TrlParser

from perfrl_trl.comparison import (
    ModelEvaluation,
    ProblemOutcome,
    beats_target_share,
    evaluate_models,
    family_table_markdown,
    paired_tests,
    per_family,
)
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.models import BUNDLED_CHECKPOINT
from perfrl_trl.trainer import RRHFConfig, RRHFTrainer
from perfrl_trl.trainer.callbacks import RLCurve, WallClockBudget


@dataclass
class VariantArguments:
    name: str = field(default="variant", metadata={"help": "Folder name of this variant under compare_dir."})
    compare_dir: str = field(default="outputs/train_pie-compare", metadata={"help": "A finished compare run."})
    # Defaults below are the compare preset's (see _parse).
    n_per_family: int = field(default=0, metadata={"help": "As in the compare run."})
    max_eval: int = field(default=0, metadata={"help": "As in the compare run."})
    val_size: int = field(default=0, metadata={"help": "Validation problems for the per-step curve."})
    rl_prompts: int = field(default=0, metadata={"help": "Prompts per RRHF step (a pass over them)."})
    rl_steps: int = field(default=0, metadata={"help": "RRHF steps (passes over the prompts)."})
    rrhf_learning_rate: float = field(default=0.0, metadata={"help": "Learning rate of the RRHF stage."})


def main():
    variant, config = _parse()
    with open(os.path.join(variant.compare_dir, "results.json")) as fh:
        saved = json.load(fh)
    # The compare run's RRHF stage's wall time, which its SFT-only arm was given too.
    seconds = next(r["train_time_s"] for name, r in saved["rows"].items() if name.startswith("SFT + RRHF"))
    sft_only = ModelEvaluation(
        SFT_ONLY, saved["rows"][SFT_ONLY], [ProblemOutcome(**o) for o in saved["outcomes"][SFT_ONLY]]
    )

    data = build_benchmark(n_per_family=variant.n_per_family, seed=config.seed)
    test = data["test"].shuffle(seed=config.seed).select(range(min(variant.max_eval, len(data["test"]))))
    train = data["train"].shuffle(seed=config.seed).select(range(variant.rl_prompts))
    val = data["validation"].shuffle(seed=config.seed).select(range(variant.val_size))
    out = os.path.join(variant.compare_dir, f"variant-{variant.name}")
    rl_config = dataclasses.replace(
        config, output_dir=out, num_train_epochs=variant.rl_steps, max_steps=-1,
        learning_rate=variant.rrhf_learning_rate, eval_strategy="epoch", lr_scheduler_type="constant",
    )  # fmt: skip
    curve, budget = RLCurve(), WallClockBudget(seconds)
    trainer = RRHFTrainer(
        str(BUNDLED_CHECKPOINT), args=rl_config, train_dataset=train, eval_dataset=val, callbacks=[curve, budget]
    )
    trainer.train()
    trainer.save_model(out)
    print(f"RRHF variant {variant.name}: {trainer.state.global_step} updates in {budget.elapsed:.0f}s "
          f"(budget {seconds:.0f}s, the SFT-only arm's)")

    name = f"RRHF variant {variant.name}"
    evals = evaluate_models({name: out}, test, config, compare_to_target=True)
    evals[SFT_ONLY] = sft_only
    tests = paired_tests(evals[name], sft_only)
    result = {
        "variant": dataclasses.asdict(variant),
        "updates": trainer.state.global_step,
        "seconds": budget.elapsed,
        "summary": evals[name].summary,
        "paired_tests_vs_sft_only": tests,
        "beats_target": beats_target_share(evals[name]),
        "per_family": per_family(evals, [SFT_ONLY, name]),
        "rl_curve": curve.history(trainer.candidate_log, variant.rl_steps),
        "outcomes": evals[name].to_dict()["outcomes"],
    }
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    s = evals[name].summary
    print(f"{name}: pass {s['percent_passed']:.1f}%, %OPT {s['percent_optimized']:.1f}% on {len(test)} problems; "
          f"SFT only: pass {sft_only.summary['percent_passed']:.1f}%, %OPT {sft_only.summary['percent_optimized']:.1f}%")
    print(f"exact McNemar against SFT only: pass p = {tests['pass_p']:.3g} ({tests['pass_only_a']} vs "
          f"{tests['pass_only_b']}), %OPT p = {tests['opt_p']:.3g} ({tests['opt_only_a']} vs {tests['opt_only_b']})")
    print(family_table_markdown(result["per_family"]))


def _parse():
    parser = TrlParser((VariantArguments, RRHFConfig))
    # The compare run's settings, so that only what is given on the command line differs.
    known = {f.name for cls in (VariantArguments, RRHFConfig) for f in fields(cls)}
    compare = {k: v for k, v in preset_defaults("compare").items() if k in known}
    parser.set_defaults(**{**compare, "output_dir": "outputs/rrhf-variant"})
    return parser.parse_args_and_config()


if __name__ == "__main__":
    main()
