"""PerfRL, end to end: RRHF against SFT-only at equal wall time, from the same model, on held-out problems.

    accelerate launch examples/train_pie.py                     # default: from the bundled checkpoint, ~6 min
    accelerate launch examples/train_pie.py --preset compare    # the same on >= 500 held-out problems
    accelerate launch examples/train_pie.py --preset scratch    # from a randomly initialised model: SFT first
    accelerate launch examples/train_pie.py --preset adapt      # RL on PIE's adaptation half, tests only,
                                                                # judged on its evaluation half (../shared/pie)
    accelerate launch examples/train_pie.py --model_name_or_path bundled-causal   # the bundled decoder-only model
    accelerate launch examples/train_pie.py --preset grpo       # RRHF against TRL's GRPO, from bundled-causal
    accelerate launch examples/train_pie.py --model_name_or_path Salesforce/codet5-small \
        --dataset pie --pie_dir ../shared/pie --preset paper     # the paper's setting, on a GPU box
    python examples/train_pie.py --config my_run.yaml            # any flag can also come from YAML

Stages (`main` runs them in this order): 0. the data splits: with `--tests_only_fraction`, the train split's
problems are split by a fixed hash of their id into a labelled part (slow program, target, tests) and a
tests-only part whose targets are withheld; 1. SFT on slow->fast pairs of the labelled part (skipped when the
start model is already fine-tuned, as the bundled checkpoint is); 2. RRHF over the RL prompts (tests-only
rows, so candidates are ranked by the tests and the timing alone; `--rl_steps` passes, one in the presets that
split), with candidates the current policy generates and held-out points on the way; 2b. "SFT only" continues
SFT on the labelled part from the same model for the same wall-clock time as stage 2 (with `--dataset
pie`, the RL prompts are the slow programs of PIE's adaptation half with their tests, and the labelled
part is the synthetic data: the bundled benchmark); 2c. with `--grpo`, TRL's GRPOTrainer on the RL prompts with
the unit-test reward, from the same model, for the same wall-clock time; 3. the start model, the
arms and the dataset's own targets are judged on the same held-out problems, with paired tests; 4. the report.
The bundled checkpoint itself comes from another recipe, examples/pretrain_checkpoint.py (`--preset pretrain`
here says so and exits).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from accelerate import PartialState
from transformers import AutoConfig
from trl import TrlParser

from perfrl_trl.comparison import (
    SFT_ONLY,
    TARGET,
    beats_target_share,
    evaluate_models,
    family_table_markdown,
    heldout_curve,
    paired_tests,
    per_family,
    speedup_endpoint,
)
from perfrl_trl.data import load_pie_programs, tests_only_split
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.energy import EnergyMeter, EnergyReading
from perfrl_trl.metrics.intervals import wilson_interval
from perfrl_trl.models import BUNDLED_CAUSAL_CHECKPOINT, BUNDLED_CHECKPOINT, ModelArguments
from perfrl_trl.presets import PRESETS, preset_defaults
from perfrl_trl.reporting import plot_loss_curves, plot_rl_arms, plot_rl_curves, provenance, write_results
from perfrl_trl.trainer import RRHFConfig, RRHFTrainer
from perfrl_trl.trainer.callbacks import RLCurve, curve_checkpoints, rl_checkpoint_schedule
from perfrl_trl.trainer.grpo import train_grpo
from perfrl_trl.trainer.sft import finetune

# The presets (`--preset NAME`, defaults that the command line still overrides) are perfrl_trl/presets.py, which
# the other recipes share. Presets that became recipes of their own exit with this message instead of running.
MOVED = {
    "pretrain": (
        "--preset pretrain is a recipe of its own now; run instead:\n"
        "  accelerate launch examples/pretrain_checkpoint.py\n"
        "It regenerates perfrl_trl/models/checkpoint with the same settings; --pretrain_stage, "
        "--pretrain_eval_per_family, --pretrain_ood_eval and --pretrain_curve_every are its --stage, "
        "--eval_per_family, --ood_eval and --curve_every."
    ),
}


@dataclass
class ScriptArguments:
    preset: str = field(default="default", metadata={"help": f"One of {sorted(PRESETS)}."})
    dataset: str = field(
        default="bench",
        metadata={
            "help": "'bench' (bundled, offline) or 'pie': RL on the slow programs of PIE's adaptation half "
            "(split_of) from their tests alone, SFT only on the bundled benchmark (and --synthetic_pairs_dir), "
            "both judged on PIE's evaluation half."
        },
    )
    synthetic_pairs_dir: str | None = field(
        default=None,
        metadata={
            "help": "--dataset pie: more synthetic SFT rows for the SFT-only arm, a datasets folder with prompt and "
            "target_code (e.g. examples/pretrain_checkpoint.py's <output_dir>/rewrite_pairs)."
        },
    )
    pie_dir: str = field(
        default="../shared/pie", metadata={"help": "PIE folder: py_test_pairs.jsonl, public_test_cases/."}
    )
    n_per_family: int = field(default=20, metadata={"help": "Bundled benchmark: problems per family."})
    families: str | None = field(
        default=None, metadata={"help": "Bundled benchmark: comma-separated families."}
    )
    from_scratch: bool = field(
        default=False,
        metadata={"help": "Start from a model built from its config (then SFT) instead of a checkpoint."},
    )
    sft_steps: int = field(default=0, metadata={"help": "Stage 1: SFT optimizer steps (0: no stage 1)."})
    sft_seconds: float | None = field(default=None, metadata={"help": "Stage 1: wall-clock budget, seconds."})
    sft_bf16: bool = field(
        default=False, metadata={"help": "Stage 1 under bf16 autocast (faster on CPU too)."}
    )
    tests_only_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Share of the train split's problems (by a fixed hash of problem_id) whose targets are "
            "withheld: SFT (stage 1, SFT only) trains on the others, the RL prompts come from these, with "
            "target_code None. 0: SFT on all of train, RL prompts from train with their targets. In [0, 1)."
        },
    )
    val_size: int = field(
        default=16,
        metadata={
            "help": "Validation problems of the RL curve's held-out points (each point's interval shrinks "
            "with it)."
        },
    )
    rl_steps: int = field(default=2, metadata={"help": "Stage 2: RRHF passes over the RL prompts."})
    rl_prompts: int = field(default=32, metadata={"help": "RL prompts (each pass goes over all of them)."})
    rl_eval_points: int | None = field(
        default=None,
        metadata={
            "help": "Held-out points of the RL curve besides the start, evenly spaced over the updates (the last "
            "after the last update); None: one after each pass. Each is a checkpoint saved during stage 2 and "
            "judged after it, outside the timed budget."
        },
    )
    rrhf_learning_rate: float = field(
        default=5e-5, metadata={"help": "Learning rate of stages 2, 2b and 2c (RRHF, SFT only, GRPO)."}
    )
    grpo: bool = field(
        default=False,
        metadata={
            "help": "Stage 2c: also train a GRPO arm (TRL's GRPOTrainer with the unit-test reward, graded within "
            "R4) on the same RL prompts, from the same start, with as many completions per prompt and the RRHF "
            "arm's wall time. Needs a causal start model (--model_name_or_path bundled-causal)."
        },
    )
    max_eval: int = field(default=78, metadata={"help": "Held-out problems evaluated (test split)."})

    def __post_init__(self):
        if self.dataset == "pie" and self.tests_only_fraction:
            raise ValueError("--dataset pie has no labelled train split: leave --tests_only_fraction at 0")
        if not 0 <= self.tests_only_fraction < 1:
            raise ValueError(f"--tests_only_fraction must be in [0, 1), got {self.tests_only_fraction}")
        if self.rl_eval_points is not None and self.rl_eval_points < 1:
            raise ValueError(f"--rl_eval_points must be at least 1 (or unset), got {self.rl_eval_points}")


def parse_args():
    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="default")
    known, _ = pre.parse_known_args()
    if known.preset in MOVED:
        sys.exit(MOVED[known.preset])
    if known.preset not in PRESETS:
        sys.exit(f"unknown --preset {known.preset!r}; choose one of {sorted(PRESETS)}")
    parser = TrlParser((ScriptArguments, RRHFConfig, ModelArguments))
    parser.set_defaults(**preset_defaults(known.preset))
    return parser.parse_args_and_config()


def benchmark(script: ScriptArguments, seed: int):
    """The bundled benchmark of `--n_per_family` (and `--families`)."""
    kwargs = {}
    if script.families:  # a restricted run holds no family out
        kwargs = {"families": script.families.split(","), "heldout_families": ()}
    return build_benchmark(n_per_family=script.n_per_family, seed=seed, **kwargs)


def load_data(script: ScriptArguments, seed: int):
    if script.dataset == "bench":
        return benchmark(script, seed)
    sys.exit(f"unknown --dataset {script.dataset!r}; use 'bench' or 'pie'")


@dataclass
class StartModel:
    """Where both arms start: the model's folder, its name in the table, and stage 1's SFT if it ran."""

    path: str
    name: str
    energy: EnergyReading | None = None
    losses: list[dict] = field(default_factory=list)
    steps: int = 0


def held_out_splits(script: ScriptArguments, config: RRHFConfig):
    """Stage 0: SFT rows (train's labelled part), RL prompts, the RL curve's validation rows, the test."""
    # TrainingArguments' data_seed (the sampler's seed) also fixes the problems, the split and the samples,
    # so that runs differing only in --seed train and are judged on the same problems.
    seed = config.seed if config.data_seed is None else config.data_seed
    if script.dataset == "pie":
        return adaptation_splits(script, config, seed)
    data = load_data(script, seed)
    train, test = data["train"], data["test"]
    if len(test) == 0 or len(train) == 0:
        n_rows = f"{len(train)} train and {len(test)} test rows"
        sys.exit(f"the {script.dataset} data has {n_rows} (raise --n_per_family)")
    try:
        labelled, tests_only, rl_train = tests_only_split(
            train, script.tests_only_fraction, script.rl_prompts, seed
        )
    except ValueError as e:
        sys.exit(f"{e} (raise --n_per_family, or change --tests_only_fraction)")
    test = test.shuffle(seed=seed).select(range(min(script.max_eval, len(test))))
    val = data["validation"].shuffle(seed=seed).select(range(min(script.val_size, len(data["validation"]))))
    sizes = {
        "train": len(train), "labelled": len(labelled), "tests_only": len(tests_only),
        "rl_prompts": len(rl_train), "validation": len(val), "test": len(test),
    }  # fmt: skip
    print(
        f"data: {len(train)} train rows ({len(labelled)} labelled for SFT, {len(tests_only)} tests-only), "
        f"{len(rl_train)} RL prompts, {len(val)} validation and {len(test)} held-out test problems"
    )
    return labelled, rl_train, val, test, sizes


def adaptation_splits(script: ScriptArguments, config: RRHFConfig, seed: int):
    """Stage 0 of `--dataset pie`: RL prompts from PIE's adaptation half (tests only, targets never read),
    SFT-only rows from the synthetic data, the test from PIE's evaluation half (its first rows, shuffled, are
    also the RL curve's few held-out checks)."""
    from datasets import concatenate_datasets, load_from_disk

    progress = not config.disable_tqdm
    # The main process judges which programs pass their own tests; the other ranks then read its cached verdicts.
    with PartialState().main_process_first():
        adapt, adapt_counts = load_pie_programs(script.pie_dir, "adapt", progress=progress)
        evaluation, eval_counts = load_pie_programs(script.pie_dir, "eval", progress=progress)
    if len(adapt) == 0 or len(evaluation) == 0:
        sys.exit(
            f"PIE in {script.pie_dir}: {len(adapt)} adaptation and {len(evaluation)} evaluation programs pass"
        )
    rl = adapt.shuffle(seed=seed).select(range(min(script.rl_prompts, len(adapt))))
    feature = rl.features["target_code"]
    # The adaptation half is trained on from its tests only: its targets leave the rows before any stage.
    rl = rl.remove_columns("target_code").add_column("target_code", [None] * len(rl), feature=feature)
    synthetic = benchmark(script, seed)["train"]
    columns = ["prompt", "input_code", "target_code"]
    labelled = synthetic.select_columns(columns)
    if script.synthetic_pairs_dir:
        labelled = concatenate_datasets(
            [labelled, load_from_disk(script.synthetic_pairs_dir).select_columns(columns)]
        )
    test = evaluation.shuffle(seed=seed).select(range(min(script.max_eval, len(evaluation))))
    val = test.select(range(min(script.val_size, len(test))))
    sizes = {
        "train": len(labelled), "labelled": len(labelled), "tests_only": len(adapt), "rl_prompts": len(rl),
        "validation": len(val), "test": len(test), "pie_adapt": adapt_counts, "pie_eval": eval_counts,
    }  # fmt: skip
    print(
        f"data: {len(rl)} RL prompts of PIE's adaptation half ({adapt_counts}), {len(labelled)} synthetic SFT "
        f"rows, {len(test)} held-out programs of its evaluation half ({eval_counts}), {len(val)} of them "
        "checked during RL"
    )
    return labelled, rl, val, test, sizes


def start_model(script, config, model_args, train) -> StartModel:
    """Stage 1: the bundled checkpoint, a given one, or a new model; then SFT when steps or seconds are set."""
    start = StartModel(model_args.model_name_or_path or str(BUNDLED_CHECKPOINT), "bundled checkpoint")
    if script.from_scratch:
        start.path = model_args.new_model(os.path.join(config.output_dir, "base"), config.seed)
    elif model_args.model_name_or_path:
        # ModelArguments turned a bundled name into its folder; the tables still say which bundled model it was.
        bundled = {
            str(BUNDLED_CHECKPOINT): "bundled checkpoint",
            str(BUNDLED_CAUSAL_CHECKPOINT): "bundled causal checkpoint",
        }
        start.name = bundled.get(start.path, "start model")
    if script.sft_steps > 0 or script.sft_seconds:
        sft_dir = os.path.join(config.output_dir, "sft")
        energy, result = finetune(
            start.path,
            sft_dir,
            config,
            train,
            config.learning_rate,
            script.sft_steps,
            script.sft_seconds,
            script.sft_bf16,
        )
        start = StartModel(sft_dir, "SFT (stage 1)", energy, result.losses, result.steps)
    return start


def curve_schedule(script, config, n_prompts: int, state: PartialState) -> dict:
    """Where an RL arm saves the checkpoints of its curve: `--rl_eval_points` points over RRHF's updates."""
    return rl_checkpoint_schedule(
        config.per_device_train_batch_size,
        config.gradient_accumulation_steps,
        n_prompts,
        script.rl_steps,
        script.rl_eval_points,
        state.num_processes,
    )


def rrhf_stage(script, config, start: StartModel, rl_train, val, state: PartialState):
    """Stage 2: RRHF passes over the RL prompts with candidates the current policy generates; the RL curve."""
    # The curve's held-out points are judged after training, from checkpoints saved on the evaluation schedule:
    # the timed stage pays only for training, and the points can use a validation set large enough to show a
    # change of a few points.
    rl_config = dataclasses.replace(
        config,
        output_dir=os.path.join(config.output_dir, "rrhf"),
        num_train_epochs=script.rl_steps,
        max_steps=-1,
        learning_rate=script.rrhf_learning_rate,
        lr_scheduler_type="constant",
        **curve_schedule(script, config, len(rl_train), state),
    )
    curve = RLCurve()
    trainer = RRHFTrainer(start.path, args=rl_config, train_dataset=rl_train, callbacks=[curve])
    with EnergyMeter(use_gpu=torch.cuda.is_available()) as meter:
        trainer.train()
    trainer.save_model(rl_config.output_dir)
    state.wait_for_everyone()
    print(
        f"stage 2: {trainer.state.global_step} RRHF updates, {_passes(script.rl_steps)} over {len(rl_train)} "
        f"prompts, in {meter.reading.seconds:.0f}s; judging the curve's {len(val)} held-out problems"
    )
    checkpoints = curve_checkpoints(start.path, rl_config.output_dir, trainer.state.global_step)
    curve.add_heldout(heldout_curve(checkpoints, val, config))
    return trainer, meter.reading, curve.history(trainer.candidate_log)


@dataclass
class GRPOArm:
    """Stage 2c's result: the row name, the trained model's folder, its energy and its RL curve."""

    name: str
    path: str
    energy: EnergyReading
    history: list[dict]


def grpo_stage(script, config, start: StartModel, rl_train, val, seconds: float, history, state) -> GRPOArm:
    """Stage 2c: TRL's GRPOTrainer on the RRHF arm's prompts, from its start, for its wall time; its curve is
    judged like RRHF's, from checkpoints saved on the same schedule (the start's point is RRHF's update 0)."""
    out = os.path.join(config.output_dir, "grpo")
    schedule = curve_schedule(script, config, len(rl_train), state)
    if schedule["save_strategy"] == "epoch":  # GRPO's passes are the budget's, not --rl_steps
        schedule["save_strategy"] = "no"
    with EnergyMeter(use_gpu=torch.cuda.is_available()) as meter:
        trainer, reward = train_grpo(
            start.path, config, rl_train, seconds, script.rrhf_learning_rate, out, **schedule
        )
    trainer.save_model(out)
    state.wait_for_everyone()
    steps = trainer.state.global_step
    print(f"stage 2c: {steps} GRPO updates in {meter.reading.seconds:.0f}s; judging its curve")
    checkpoints = curve_checkpoints(start.path, out, steps)
    del checkpoints[0]
    curve = RLCurve()
    curve.add_heldout({0: {k: v for k, v in history[0].items() if k.startswith("eval_")}})
    curve.add_heldout(heldout_curve(checkpoints, val, config))
    return GRPOArm(rl_arm_name(script, len(rl_train), "GRPO"), out, meter.reading, curve.history(reward.log))


def _passes(n: int) -> str:
    return f"{n} pass" if n == 1 else f"{n} passes"


def rl_arm_name(script: ScriptArguments, n_prompts: int, method: str = "RRHF") -> str:
    """An RL arm's row name: its method, and how much RL it had on what. RRHF's passes are `--rl_steps`; the GRPO
    arm's follow from the RRHF arm's wall time, which it is given."""
    amount = _passes(script.rl_steps) if method == "RRHF" else "same wall time"
    if script.dataset == "pie":
        return f"SFT + {method} ({n_prompts} PIE adaptation programs, tests only, {amount})"
    if script.tests_only_fraction > 0:
        return f"SFT + {method} ({n_prompts} tests-only prompts, {amount})"
    if method == "RRHF":
        return f"SFT + RRHF ({script.rl_steps} steps)"
    return f"SFT + {method} ({n_prompts} prompts, {amount})"


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"


def _interval(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def write_report(
    script,
    config,
    evals,
    start: StartModel,
    rrhf_name,
    rl_energy,
    sft_only_energy,
    sft_only,
    history,
    sizes,
    started: float,
    made_by: dict,
    loads: dict[str, tuple[float, float, float]] | None = None,
    grpo: GRPOArm | None = None,
):
    """Results: rows with training cost, paired tests, notes, the per-family table; the RL and SFT-loss plots.

    `loads` is the machine's load average (1, 5, 15 minutes) at the end of each arm, as a check that the arms
    shared the machine alike. `grpo`: stage 2c's arm, paired with each of the others. `made_by`: the run's
    `provenance()`, read when it started."""
    out = config.output_dir
    rows = {name: e.summary for name, e in evals.items()}
    arms = [(SFT_ONLY, sft_only_energy), (rrhf_name, rl_energy)] + (
        [(grpo.name, grpo.energy)] if grpo else []
    )
    per_update = config.per_device_train_batch_size * config.gradient_accumulation_steps
    per_update *= (config.num_random_samples + config.num_greedy_samples) * max(1, config.world_size)
    updates = {rrhf_name: sum(h.get("pass_rate") is not None for h in history)}
    if grpo:
        updates[grpo.name] = sum(h.get("pass_rate") is not None for h in grpo.history)
    for name, n in updates.items():
        rows[name]["candidates_judged"] = n * per_update
    for name, arm in arms:
        first = start.energy.seconds if start.energy else 0.0
        rows[name].update(
            train_time_s=first + arm.seconds,
            energy_kj=(start.energy.kilojoules if start.energy else 0.0) + arm.kilojoules,
            peak_w=max(arm.peak_watts, start.energy.peak_watts if start.energy else 0.0),
            energy_method=arm.method,
        )
    beats = {}
    if TARGET in evals:  # the table's share: every problem whose target passed
        for name in evals:
            if name == TARGET:
                continue
            beats[name] = {
                "all": beats_target_share(evals[name], kinds=None),
                "partial": beats_target_share(evals[name]),
            }
            b = beats[name]["all"]
            if b["n"]:
                lo, hi = wilson_interval(b["beats"], b["n"])
                rows[name].update(
                    beats_target_share=100 * b["share"], beats_target_share_ci=[100 * lo, 100 * hi]
                )
    tests = paired_tests(evals[rrhf_name], evals[SFT_ONLY])
    vs_start = paired_tests(evals[rrhf_name], evals[start.name])
    endpoint = speedup_endpoint(evals[rrhf_name], evals[SFT_ONLY])
    notes = [
        f"Held-out: {sizes['test']} problems ({script.dataset}, test split); 95% intervals in brackets "
        "(Wilson for rates, bootstrap for SP/RTR). Beam search with "
        f"{config.eval_num_beams} beams, best of {config.eval_num_return_sequences}, judged in the sandbox.",
        f"'SFT only' continued SFT from the {start.name} for the same wall-clock time as the RRHF stage "
        f"({rl_energy.seconds:.0f}s, {sft_only.steps} steps).",
    ]
    if script.dataset == "pie":
        adapt, held = sizes["pie_adapt"], sizes["pie_eval"]
        notes.append(
            f"RRHF: {sizes['rl_prompts']} slow programs of PIE's adaptation half, tests only (targets never "
            f"read), {_passes(script.rl_steps)}; of its {adapt['programs']} distinct slow programs "
            f"{adapt['passing_own_tests']} pass their own tests (left out: {adapt['left_out']}). SFT only: "
            f"{sizes['labelled']} synthetic rows (the bundled benchmark's train split"
            f"{' and ' + script.synthetic_pairs_dir if script.synthetic_pairs_dir else ''}). Held-out: PIE's "
            f"evaluation half, {held['passing_own_tests']} of its {held['programs']} distinct slow programs "
            f"passing their own tests (left out: {held['left_out']}); the RL curve's checks are its first "
            f"{sizes['validation']}."
        )
    no_signal = [h["groups_without_signal"] for h in history if h.get("groups_without_signal") is not None]
    if no_signal:
        with_signal = 1 - sum(no_signal) / len(no_signal)
        notes.append(
            f"Prompts whose candidates gave any ranking signal (not all equally rewarded): {_pct(with_signal)} "
            "(the mean over RL updates); a prompt without signal teaches nothing."
        )
    if script.tests_only_fraction > 0:
        notes.append(
            f"Train split ({sizes['train']} rows) by a fixed hash of problem_id: {sizes['labelled']} "
            "labelled rows (slow, target, tests), the only ones SFT saw, and "
            f"{sizes['tests_only']} tests-only rows ({100 * script.tests_only_fraction:.0f}% of the problems "
            f"in expectation; targets withheld). RRHF: {sizes['rl_prompts']} tests-only prompts, "
            f"{_passes(script.rl_steps)}, ranked by tests and timing alone."
        )
    notes.append(
        f"RRHF vs SFT only, exact McNemar: pass p = {tests['pass_p']:.3g} ({tests['pass_only_a']} problems "
        f"passed by RRHF only, {tests['pass_only_b']} by SFT only); %OPT p = {tests['opt_p']:.3g} "
        f"({tests['opt_only_a']} vs {tests['opt_only_b']})."
    )
    if beats:
        notes.append(
            "'faster than target %': share of the problems whose dataset target passed where the model's "
            f"program was faster than that target by the margin ({config.speedup_margin})."
        )
        for name in (SFT_ONLY, rrhf_name, *([grpo.name] if grpo else [])):
            a, p = beats[name]["all"], beats[name]["partial"]
            notes.append(
                f"{name}: faster than the dataset's target on {a['beats']} of {a['n']} problems "
                f"({_pct(a['share'])}), and on {p['beats']} of the {p['n']} whose target is only partly "
                f"optimised (partial or marginal; {_pct(p['share'])})."
            )
        notes.append(
            f"Faster than target, RRHF vs SFT only, exact McNemar: all problems p = {tests['beats_p']:.3g} "
            f"({tests['beats_only_a']} by RRHF only, {tests['beats_only_b']} by SFT only); partial or "
            f"marginal targets p = {tests['beats_partial_p']:.3g} ({tests['beats_partial_only_a']} vs "
            f"{tests['beats_partial_only_b']})."
        )
        notes.append(
            f"RRHF vs the {start.name} it started from, exact McNemar: faster than target p = "
            f"{vs_start['beats_p']:.3g} ({vs_start['beats_only_a']} by RRHF only, {vs_start['beats_only_b']} by "
            f"the {start.name} only); pass p = {vs_start['pass_p']:.3g} ({vs_start['pass_only_a']} vs "
            f"{vs_start['pass_only_b']})."
        )
    notes.append(
        f"Speed-up per problem (a failure counts as 1.0, the slow program kept): geometric mean "
        f"{endpoint['geomean_speedup_a']:.3f}x for RRHF, {endpoint['geomean_speedup_b']:.3f}x for SFT only; "
        f"RRHF faster on {endpoint['a_faster']}, slower on {endpoint['a_slower']} of {endpoint['n']} "
        "problems; "
        f"Wilcoxon signed-rank p = {endpoint['wilcoxon_p']:.3g} (on the log speed-ups)."
    )
    evaluated = [h for h in history if h.get("eval_pass_rate") is not None]
    if evaluated:
        points = "; ".join(
            f"update {h['step']}: faster than target {_pct(h.get('eval_beats_target_rate'))}"
            f"{_interval(h.get('eval_beats_target_ci'))}, pass {_pct(h['eval_pass_rate'])}"
            f"{_interval(h.get('eval_pass_ci'))}"
            for h in evaluated
        )
        notes.append(
            f"RL curve on {sizes['validation']} validation problems, judged after training from checkpoints "
            f"saved along it (rl_curves.png; 95% Wilson intervals): {points}."
        )
    grpo_tests = {}
    if grpo:
        grpo_tests = {
            "paired_tests_rrhf_vs_grpo": paired_tests(evals[rrhf_name], evals[grpo.name]),
            "paired_tests_grpo_vs_sft_only": paired_tests(evals[grpo.name], evals[SFT_ONLY]),
            "paired_tests_grpo_vs_start": paired_tests(evals[grpo.name], evals[start.name]),
            "speedup_endpoint_rrhf_vs_grpo": speedup_endpoint(evals[rrhf_name], evals[grpo.name]),
            "speedup_endpoint_grpo_vs_sft_only": speedup_endpoint(evals[grpo.name], evals[SFT_ONLY]),
        }
        notes.append(
            f"'{grpo.name}': TRL's GRPOTrainer from the {start.name}, with the unit-test reward (the same tiers "
            "and margin, graded by speed-up within R4), on the RRHF arm's prompts with as many completions per "
            "prompt (all sampled), for the RRHF arm's wall time "
            f"({grpo.energy.seconds:.0f}s, {rows[grpo.name]['candidates_judged']} candidates judged)."
        )
        for label, key in (
            ("RRHF vs GRPO", "paired_tests_rrhf_vs_grpo"),
            ("GRPO vs SFT only", "paired_tests_grpo_vs_sft_only"),
            (f"GRPO vs the {start.name}", "paired_tests_grpo_vs_start"),
        ):
            t = grpo_tests[key]
            notes.append(
                f"{label}, exact McNemar: faster than target p = {t['beats_p']:.3g} ({t['beats_only_a']} vs "
                f"{t['beats_only_b']}); pass p = {t['pass_p']:.3g} ({t['pass_only_a']} vs {t['pass_only_b']})."
            )
        e = grpo_tests["speedup_endpoint_rrhf_vs_grpo"]
        notes.append(
            f"Speed-up per problem, RRHF vs GRPO: geometric mean {e['geomean_speedup_a']:.3f}x vs "
            f"{e['geomean_speedup_b']:.3f}x; Wilcoxon signed-rank p = {e['wilcoxon_p']:.3g}."
        )
    if rl_energy.method == "estimate":
        notes.append("Energy and peak power marked * are ESTIMATES (CPU-seconds x 12 W per busy core).")
    if loads:
        notes.append(
            "Machine load average (1/5/15 min) at the end of each arm: "
            + "; ".join(f"{name}: {'/'.join(f'{x:.2f}' for x in v)}" for name, v in loads.items())
            + f" ({os.cpu_count()} CPUs; each arm alone keeps about 2 busy)."
        )
    has_families = any(o.family for o in evals[rrhf_name].outcomes)
    compared = [SFT_ONLY, rrhf_name] + ([grpo.name] if grpo else [])
    family_rows = per_family(evals, compared) if has_families else []
    json_path, md_path = write_results(
        os.path.join(out, "results"),
        rows,
        notes,
        extra={
            # What "faster" was measured in: CPU time, or instruction counts (docs/cost.md).
            "cost": config.execution_config_kwargs().get("cost", "cpu_time"),
            "data": sizes,
            "paired_tests": tests,
            "paired_tests_vs_start": vs_start,
            "beats_target": beats,
            "speedup_endpoint": endpoint,
            "per_family": family_rows,
            "outcomes": {name: e.to_dict()["outcomes"] for name, e in evals.items()},
            "rl_curve": history,
            "sft_loss": start.losses,
            "sft_only_loss": sft_only.losses,
            "wall_time_s": time.monotonic() - started,
            "machine_load": loads,
            **grpo_tests,
            **({"grpo_rl_curve": grpo.history} if grpo else {}),
        },
        made_by=made_by,
    )
    if family_rows:
        with open(md_path, "a") as fh:
            fh.write(
                "\n## Per family (pass and %OPT, percent)\n\n" + family_table_markdown(family_rows) + "\n"
            )
    plot_rl_curves(history, os.path.join(out, "rl_curves.png"))
    if grpo:
        plot_rl_arms({"RRHF": history, "GRPO": grpo.history}, os.path.join(out, "rl_arms.png"))
    continued = [{**p, "step": p["step"] + start.steps} for p in sft_only.losses]
    plot_loss_curves(
        {"stage 1: SFT": start.losses, "stage 2b: SFT only (continued)": continued},
        os.path.join(out, "sft_loss.png"),
    )
    return json_path, md_path


def main():
    script, config, model_args = parse_args()
    state = PartialState()
    started = time.monotonic()
    made_by = provenance()  # now: the checkout may move during a long run
    out = config.output_dir

    # stage 0. data: SFT rows and RL prompts from train (split by problem), the curve from validation, the
    # comparison from test
    labelled, rl_train, val, test, sizes = held_out_splits(script, config)

    # stage 1. the start model: the bundled checkpoint, a given one, or a new model fine-tuned here
    start = start_model(script, config, model_args, labelled)
    if script.grpo:  # before any arm trains: GRPO's settings that cannot work stop the run now
        if AutoConfig.from_pretrained(start.path).is_encoder_decoder:
            sys.exit(
                f"--grpo needs a causal start model (TRL's GRPOTrainer takes no encoder-decoder), and {start.path} "
                "is one; add --model_name_or_path bundled-causal (or your own causal LM)"
            )
        if config.num_random_samples + config.num_greedy_samples < 2:
            sys.exit(
                "--grpo needs at least 2 completions per prompt (num_random_samples + num_greedy_samples)"
            )

    # stage 2. RRHF over the RL prompts with freshly generated candidates, held-out points on the way
    trainer, rl_energy, history = rrhf_stage(script, config, start, rl_train, val, state)
    rrhf_name = rl_arm_name(script, len(rl_train))
    # Equal wall time is only fair on an equally loaded machine: keep the machine's load after each arm.
    loads = {rrhf_name: os.getloadavg()}

    # stage 2b. SFT only on the labelled rows, for the same wall-clock time, from the same start model
    sft_only_dir = os.path.join(out, "sft_only")
    sft_only_energy, sft_only = finetune(
        start.path,
        sft_only_dir,
        config,
        labelled,
        script.rrhf_learning_rate,
        seconds=rl_energy.seconds,
        lr_scheduler_type="constant",
        warmup_steps=0,
    )
    loads[SFT_ONLY] = os.getloadavg()

    # stage 2c. GRPO on the same prompts, from the same model, for the same wall-clock time (--grpo)
    grpo = None
    if script.grpo:
        grpo = grpo_stage(script, config, start, rl_train, val, rl_energy.seconds, history, state)
        loads[grpo.name] = os.getloadavg()

    # stage 3. the start model, the arms and the dataset's targets, judged together on the same held-out problems
    models = {start.name: start.path, SFT_ONLY: sft_only_dir, rrhf_name: trainer.args.output_dir}
    if grpo:
        models[grpo.name] = grpo.path
    evals = evaluate_models(models, test, config, compare_to_target=script.dataset in ("bench", "pie"))
    if not state.is_main_process:
        return

    # stage 4. report: results.json and results.md, the plots, the final model
    json_path, md_path = write_report(
        script,
        config,
        evals,
        start,
        rrhf_name,
        rl_energy,
        sft_only_energy,
        sft_only,
        history,
        sizes,
        started,
        made_by,
        loads,
        grpo,
    )
    trainer.save_model(os.path.join(out, "final_model"))
    with open(md_path) as fh:
        print(fh.read())
    print(
        f"wrote {json_path}, {md_path}, rl_curves.png, sft_loss.png and final_model/ in {out} "
        f"in {time.monotonic() - started:.0f}s"
    )
    if config.push_to_hub:
        trainer.push_to_hub(dataset_name=script.dataset)


if __name__ == "__main__":
    main()
