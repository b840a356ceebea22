"""One RRHF variant against a finished `--preset compare` run: same start, same wall time, same held-out problems.

    accelerate launch examples/train_pie.py --preset compare        # first: writes outputs/train_pie-compare
    python examples/rrhf_variant.py --name lr2e-5 --rrhf_learning_rate 2e-5    # then: a variant of its RRHF

The compare run's SFT-only arm is not retrained: the variant's RRHF stage gets the same wall-clock budget as
that run's RRHF stage (which the SFT-only arm was given too), starts from the same checkpoint, and is judged on
the same 507 held-out problems, so its per-problem outcomes pair with the saved ones (exact McNemar tests on
pass, %OPT and beating the target, a Wilcoxon test on the speed-ups; the programs were judged in two separate runs,
so the timing side carries the noise of both moments too). Its RL prompts are drawn as the compare run's are
(`perfrl_trl.data.tests_only_split`: tests-only rows, targets withheld). Every setting not given on the command line is the
compare preset's (`perfrl_trl.presets.preset_defaults("compare")`).
Writes `<compare_dir>/variant-<name>/results.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields

from accelerate import PartialState
from trl import TrlParser

from perfrl_trl.comparison import (
    SFT_ONLY,
    ModelEvaluation,
    ProblemOutcome,
    beats_target_share,
    evaluate_models,
    family_table_markdown,
    heldout_curve,
    paired_tests,
    per_family,
    speedup_endpoint,
)
from perfrl_trl.data import tests_only_split
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.models import BUNDLED_CHECKPOINT
from perfrl_trl.presets import preset_defaults
from perfrl_trl.reporting import provenance
from perfrl_trl.trainer import RRHFConfig, RRHFTrainer
from perfrl_trl.trainer.callbacks import RLCurve, WallClockBudget, curve_checkpoints, rl_checkpoint_schedule


@dataclass
class VariantArguments:
    name: str = field(default="variant", metadata={"help": "Folder name of this variant under compare_dir."})
    compare_dir: str = field(
        default="outputs/train_pie-compare", metadata={"help": "A finished compare run."}
    )
    # Defaults below are the compare preset's (see _parse).
    n_per_family: int = field(default=0, metadata={"help": "As in the compare run."})
    max_eval: int = field(default=0, metadata={"help": "As in the compare run."})
    val_size: int = field(default=0, metadata={"help": "Validation problems for the per-step curve."})
    tests_only_fraction: float = field(
        default=0.0, metadata={"help": "As in the compare run (train_pie.py)."}
    )
    rl_prompts: int = field(default=0, metadata={"help": "RL prompts (each pass goes over all of them)."})
    rl_steps: int = field(default=0, metadata={"help": "RRHF passes over the prompts."})
    rl_eval_points: int | None = field(
        default=None, metadata={"help": "Held-out points: checkpoints saved during RRHF, judged after it."}
    )
    rrhf_learning_rate: float = field(default=0.0, metadata={"help": "Learning rate of the RRHF stage."})


def main():
    variant, config = _parse()
    made_by = provenance()  # now: the checkout may move during a long run
    with open(os.path.join(variant.compare_dir, "results.json")) as fh:
        saved = json.load(fh)
    # The compare run's RRHF stage's wall time, which its SFT-only arm was given too.
    seconds = next(r["train_time_s"] for name, r in saved["rows"].items() if name.startswith("SFT + RRHF"))
    sft_only = ModelEvaluation(
        SFT_ONLY, saved["rows"][SFT_ONLY], [ProblemOutcome(**o) for o in saved["outcomes"][SFT_ONLY]]
    )

    seed = (
        config.seed if variant.data_seed is None else variant.data_seed
    )  # the problems, as in the compare run
    data = build_benchmark(n_per_family=variant.n_per_family, seed=seed)
    test = data["test"].shuffle(seed=seed).select(range(min(variant.max_eval, len(data["test"]))))
    _, _, train = tests_only_split(data["train"], variant.tests_only_fraction, variant.rl_prompts, seed)
    val = data["validation"].shuffle(seed=seed).select(range(variant.val_size))
    out = os.path.join(variant.compare_dir, f"variant-{variant.name}")
    # As in train_pie: the curve's checkpoints are judged after training, so the budget pays for training only.
    schedule = rl_checkpoint_schedule(
        config.per_device_train_batch_size,
        config.gradient_accumulation_steps,
        len(train),
        variant.rl_steps,
        variant.rl_eval_points,
        PartialState().num_processes,
    )
    rl_config = dataclasses.replace(
        config, output_dir=out, num_train_epochs=variant.rl_steps, max_steps=-1,
        learning_rate=variant.rrhf_learning_rate, lr_scheduler_type="constant", **schedule,
    )  # fmt: skip
    curve, budget = RLCurve(), WallClockBudget(seconds)
    trainer = RRHFTrainer(
        str(BUNDLED_CHECKPOINT), args=rl_config, train_dataset=train, callbacks=[curve, budget]
    )
    trainer.train()
    trainer.save_model(out)
    PartialState().wait_for_everyone()
    checkpoints = curve_checkpoints(str(BUNDLED_CHECKPOINT), out, trainer.state.global_step)
    curve.add_heldout(heldout_curve(checkpoints, val, config))
    print(
        f"RRHF variant {variant.name}: {trainer.state.global_step} updates in {budget.elapsed:.0f}s "
        f"(budget {seconds:.0f}s, the SFT-only arm's)"
    )

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
        "speedup_endpoint_vs_sft_only": speedup_endpoint(evals[name], sft_only),
        "beats_target": {
            "all": beats_target_share(evals[name], kinds=None),
            "partial": beats_target_share(evals[name]),
        },
        "per_family": per_family(evals, [SFT_ONLY, name]),
        "rl_curve": curve.history(trainer.candidate_log),
        "outcomes": evals[name].to_dict()["outcomes"],
        "provenance": made_by,
    }
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    s, b = evals[name].summary, sft_only.summary
    print(
        f"{name}: pass {s['percent_passed']:.1f}%, %OPT {s['percent_optimized']:.1f}% on {len(test)} "
        "problems; "
        f"SFT only: pass {b['percent_passed']:.1f}%, %OPT {b['percent_optimized']:.1f}%"
    )
    print(
        "exact McNemar against SFT only: "
        + ", ".join(
            f"{label} p = {tests[f'{key}_p']:.3g} ({tests[f'{key}_only_a']} vs {tests[f'{key}_only_b']})"
            for label, key in (("pass", "pass"), ("%OPT", "opt"), ("faster than target", "beats"))
        )
    )
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
