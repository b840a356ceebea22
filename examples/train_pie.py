"""PerfRL, end to end: SFT on slow->fast pairs, K RRHF RL steps, evaluation (the paper's Table I and Fig. 2).

    accelerate launch examples/train_pie.py                       # default: offline, 2 CPU cores, <= 10 min
    accelerate launch examples/train_pie.py --preset paper-small  # RRHF vs SFT at equal wall time (~80 min CPU)
    accelerate launch examples/train_pie.py --preset focused      # the same on 10 short-program families (~45 min)
    accelerate launch examples/train_pie.py --model_name_or_path Salesforce/codet5-small \
        --dataset pie --pie_dir ../shared/pie --preset paper       # the paper's setting, on a GPU box
    python examples/train_pie.py --config my_run.yaml              # any flag can also come from YAML

Stages: 0. "before fine-tuning" is evaluated; 1. SFT with cross-entropy; 2. K RRHF steps, each a pass over
the RL prompts that regenerates candidates with the current policy; 2b. "SFT only" continues SFT for the
same wall-clock time as stage 2; 3. both are evaluated on the same held-out split.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from trl import TrlParser

from perfrl_trl.collator import SFTCollator
from perfrl_trl.data import load_pie
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.energy import EnergyMeter
from perfrl_trl.metrics.arithmetic import aggregate, best_of_k
from perfrl_trl.models import create_pretrained, load_model_and_tokenizer
from perfrl_trl.reporting import mcnemar_exact, plot_loss_curves, plot_rl_curves, write_results
from perfrl_trl.trainer import RRHFConfig, RRHFTrainer

_PAPER_SMALL = dict(
    model_size="small",
    n_per_family=130,  # 507 held-out test problems
    sft_steps=100000,
    sft_seconds=2400,
    rl_steps=3,
    rl_prompts=96,
    max_eval=600,
    val_size=32,
    learning_rate=1e-3,
    per_device_train_batch_size=8,
    max_completion_length=192,
    max_prompt_length=320,
    rrhf_learning_rate=2e-4,
    execution_n_trials=3,
    rank_on_differing_tokens=True,
)

# Each preset sets defaults; flags given on the command line (or in --config) still win.
PRESETS = {
    # <= 10 minutes on 2 CPU cores: stages are bounded by wall-clock budgets as well as step counts.
    "default": dict(
        model_size="tiny",
        n_per_family=10,
        sft_steps=5000,
        sft_seconds=240,
        rl_steps=2,
        rl_prompts=16,
        max_eval=40,
        val_size=8,
        learning_rate=2e-3,
        per_device_train_batch_size=8,
        max_completion_length=128,
        max_prompt_length=256,
        rrhf_learning_rate=1e-4,
        execution_n_trials=3,
        rank_on_differing_tokens=True,
    ),
    "tiny": dict(
        model_size="tiny",
        n_per_family=10,
        sft_steps=20,
        rl_steps=2,
        rl_prompts=6,
        max_eval=8,
        val_size=3,
        families="sum_formula,string_concat,membership_set",
        per_device_train_batch_size=2,
        max_completion_length=48,
        max_prompt_length=160,
        learning_rate=1e-3,
        rrhf_learning_rate=1e-3,
        execution_n_trials=3,
        eval_num_beams=2,
    ),
    # RRHF against SFT-only at equal wall time on >= 500 held-out problems (~80 min CPU; SFT has not plateaued).
    "paper-small": _PAPER_SMALL,
    # The same comparison on 10 families with short programs, so that a from-scratch model on a CPU passes
    # some problems within minutes and the reward has passing candidates to rank (~45 min CPU).
    "focused": dict(
        _PAPER_SMALL,
        families=(
            "sum_formula,stdin_lines,output_join,string_concat,reverse_prepend,membership_set,count_dict,"
            "hand_sort,kth_sort,dict_keys_list"
        ),
        n_per_family=510,  # 510 held-out test problems
        sft_seconds=1200,
        rl_prompts=48,
        val_size=24,
        skip_before=True,  # a random model passes nothing: shown by paper-small
    ),
    "paper": dict(
        dataset="pie",
        sft_steps=20000,
        rl_steps=10,
        rl_prompts=2000,
        max_eval=1000,
        val_size=100,
        learning_rate=5e-5,
        per_device_train_batch_size=8,
        max_completion_length=512,
        max_prompt_length=512,
        rrhf_learning_rate=2e-5,
        bf16=torch.cuda.is_available(),
    ),
}


@dataclass
class ScriptArguments:
    preset: str = field(default="default", metadata={"help": f"One of {sorted(PRESETS)}."})
    dataset: str = field(default="bench", metadata={"help": "'bench' (bundled, offline) or 'pie'."})
    pie_dir: str = field(
        default="../shared/pie", metadata={"help": "PIE folder: py_test_pairs.jsonl, public_test_cases/."}
    )
    n_per_family: int = field(default=10, metadata={"help": "Bundled benchmark: problems per family."})
    families: str | None = field(
        default=None, metadata={"help": "Bundled benchmark: comma-separated families."}
    )
    sft_steps: int = field(default=600, metadata={"help": "Stage 1: SFT optimizer steps (at most)."})
    sft_seconds: float | None = field(default=None, metadata={"help": "Stage 1: wall-clock budget, seconds."})
    val_size: int = field(default=24, metadata={"help": "Validation problems evaluated after each RL step."})
    rl_steps: int = field(default=3, metadata={"help": "Stage 2: K RRHF steps (passes over the RL prompts)."})
    rl_prompts: int = field(default=48, metadata={"help": "Prompts per RRHF step."})
    rrhf_learning_rate: float = field(default=2e-4, metadata={"help": "Learning rate of stages 2 and 2b."})
    max_eval: int = field(default=96, metadata={"help": "Held-out problems evaluated (test split)."})
    skip_before: bool = field(
        default=False, metadata={"help": "Skip evaluating the model before fine-tuning."}
    )


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or folder; none: build one."}
    )
    model_arch: str = field(default="t5", metadata={"help": "Factory architecture: 't5' or 'decoder'."})
    model_size: str = field(
        default="small", metadata={"help": "Factory size: tiny, small, base, codet5-small."}
    )


class StopAfter(TrainerCallback):
    """Stop training after a wall-clock budget: 'SFT only' gets exactly the time RRHF took."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.start >= self.seconds:
            control.should_training_stop = True


class EvalCurve(TrainerCallback):
    """Held-out pass and %OPT after each RL step (the dashed lines of Fig. 2)."""

    def __init__(self):
        self.points: list[dict] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_percent_passed" in metrics:
            self.points.append(
                {
                    "eval_pass_rate": metrics["eval_percent_passed"] / 100,
                    "eval_opt_rate": metrics.get("eval_percent_optimized", 0) / 100,
                    "eval_compile_rate": metrics.get("eval_percent_compiled", 0) / 100,
                }
            )


def rl_history(trainer: RRHFTrainer, evals: EvalCurve, rl_steps: int) -> list[dict]:
    """Per RL step: mean rates of the candidates generated during it, then the held-out rates after it."""
    history = []
    for step in range(1, rl_steps + 1):
        # A step's candidates are made while the epoch counter is between step - 1 and step.
        logs = [r for r in trainer.candidate_log if step - 1 <= r["epoch"] < step]
        point = {"step": step}
        for key in ("compile_rate", "pass_rate", "opt_rate", "degenerate_rate"):
            point[key] = sum(r[key] for r in logs) / len(logs) if logs else None
        if step <= len(evals.points):
            point.update(evals.points[step - 1])
        history.append(point)
    return history


def parse_args():
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="default")
    known, _ = pre.parse_known_args()
    if known.preset not in PRESETS:
        sys.exit(f"unknown --preset {known.preset!r}; choose one of {sorted(PRESETS)}")
    parser = TrlParser((ScriptArguments, RRHFConfig, ModelArguments))
    parser.set_defaults(
        output_dir=f"outputs/train_pie-{known.preset}",
        report_to="none",
        save_strategy="no",
        logging_steps=10,
        **PRESETS[known.preset],
    )
    return parser.parse_args_and_config()


def load_data(script: ScriptArguments, seed: int):
    if script.dataset == "bench":
        kwargs = {}
        if script.families:  # a restricted run holds no family out
            kwargs = {"families": script.families.split(","), "heldout_families": ()}
        return build_benchmark(n_per_family=script.n_per_family, seed=seed, **kwargs)
    if script.dataset == "pie":
        pairs = os.path.join(script.pie_dir, "py_test_pairs.jsonl")
        return load_pie(
            pairs,
            os.path.join(script.pie_dir, "public_test_cases"),
            seed=seed,
            splits={"train": 0.8, "validation": 0.1, "test": 0.1},
            filter_executable=True,
        )
    sys.exit(f"unknown --dataset {script.dataset!r}; use 'bench' or 'pie'")


def evaluate(model_dir: str, config: RRHFConfig, dataset) -> tuple[dict, list[bool]]:
    """Beam search on the held-out split, scored in the sandbox; summary with intervals, and pass per problem."""
    trainer = RRHFTrainer(
        model_dir,
        args=dataclasses.replace(config, output_dir=os.path.join(config.output_dir, "eval")),
        eval_dataset=dataset,
    )
    trainer.evaluate()
    results = trainer.last_eval_results
    summary = aggregate(results, margin=config.speedup_margin)
    passed = [best_of_k(r, config.speedup_margin).passed for r in results]
    return summary, passed


def sft(
    model_dir: str,
    out_dir: str,
    config: RRHFConfig,
    train,
    max_steps: int,
    lr: float,
    seconds: float | None = None,
):
    """Plain cross-entropy fine-tuning (transformers.Trainer) on prompt -> target_code."""
    model, tok = load_model_and_tokenizer(model_dir)
    args = TrainingArguments(
        output_dir=out_dir,
        max_steps=max_steps if max_steps > 0 else 10**6,
        learning_rate=lr,
        per_device_train_batch_size=config.per_device_train_batch_size,
        logging_steps=config.logging_steps,
        report_to=config.report_to,
        save_strategy="no",
        remove_unused_columns=False,
        seed=config.seed,
        bf16=config.bf16,
        use_cpu=config.use_cpu,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=20,
        disable_tqdm=config.disable_tqdm,
    )
    collator = SFTCollator(
        tok, model.config.is_encoder_decoder, config.max_prompt_length, config.max_completion_length
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=collator,
        processing_class=tok,
        callbacks=[StopAfter(seconds)] if seconds is not None else None,
    )
    if config.device.type == "cpu":
        torch.set_num_threads(config.cpu_threads or max(1, (os.cpu_count() or 2) // 2))
    with EnergyMeter(use_gpu=torch.cuda.is_available()) as meter:
        trainer.train()
    trainer.save_model(out_dir)
    losses = [
        {"step": r["step"], "loss": r["loss"]}
        for r in trainer.state.log_history
        if "loss" in r and "step" in r
    ]
    return meter.reading, trainer.state.global_step, losses


def main():
    script, config, model_args = parse_args()
    started = time.monotonic()
    out = config.output_dir
    os.makedirs(out, exist_ok=True)
    data = load_data(script, config.seed)
    train, test = data["train"], data["test"]
    if len(test) == 0 or len(train) == 0:
        sys.exit(
            f"the {script.dataset} data has {len(train)} train and {len(test)} test rows; it needs both "
            f"(raise --n_per_family)"
        )
    test = test.select(range(min(script.max_eval, len(test))))
    rl_train = train.shuffle(seed=config.seed).select(range(min(script.rl_prompts, len(train))))
    val = data["validation"].select(range(min(script.val_size, len(data["validation"]))))
    print(f"data: {len(train)} train, {len(test)} held-out test problems, {len(rl_train)} RL prompts")

    base = model_args.model_name_or_path or create_pretrained(
        model_args.model_arch,
        model_args.model_size,
        os.path.join(out, "base"),
        seed=config.seed,
        overwrite=True,
    )
    rows, passed = {}, {}

    # 0. before fine-tuning
    if not script.skip_before:
        rows["before fine-tuning"], passed["before"] = evaluate(base, config, test)

    # 1. SFT with cross-entropy on the slow->fast pairs
    sft_dir = os.path.join(out, "sft")
    sft_energy, sft_steps, sft_losses = sft(
        base, sft_dir, config, train, script.sft_steps, config.learning_rate, seconds=script.sft_seconds
    )
    print(f"stage 1: {sft_steps} SFT steps in {sft_energy.seconds:.0f}s")

    # 2. K RRHF RL steps, each a pass over the RL prompts with freshly generated candidates
    rl_config = dataclasses.replace(
        config,
        output_dir=os.path.join(out, "rrhf"),
        num_train_epochs=script.rl_steps,
        max_steps=-1,
        learning_rate=script.rrhf_learning_rate,
        eval_strategy="epoch",
        lr_scheduler_type="constant",
    )
    evals = EvalCurve()
    trainer = RRHFTrainer(
        sft_dir, args=rl_config, train_dataset=rl_train, eval_dataset=val, callbacks=[evals]
    )
    # Step 0 of the curve: the SFT checkpoint on the validation problems, outside the timed RL stage.
    trainer.evaluate()
    start_point = {"step": 0, **evals.points.pop()} if evals.points else None
    with EnergyMeter(use_gpu=torch.cuda.is_available()) as meter:
        trainer.train()
    rl_energy = meter.reading
    curve = ([start_point] if start_point else []) + rl_history(trainer, evals, script.rl_steps)
    trainer.save_model(rl_config.output_dir)
    print(
        f"stage 2: {script.rl_steps} RRHF steps ({trainer.state.global_step} optimizer steps) in {rl_energy.seconds:.0f}s"
    )

    # 2b. SFT only, for the same wall-clock time as stage 2, from the same SFT checkpoint
    sft_only_dir = os.path.join(out, "sft_only")
    shutil.copytree(sft_dir, sft_only_dir, dirs_exist_ok=True)
    sft_only_energy, extra_steps, sft_only_losses = sft(
        sft_dir, sft_only_dir, config, train, 0, script.rrhf_learning_rate, seconds=rl_energy.seconds
    )

    # 3. evaluation on the same held-out split
    rows["SFT only (same compute)"], passed["sft"] = evaluate(sft_only_dir, config, test)
    rows[f"SFT + RRHF ({script.rl_steps} steps)"], passed["rrhf"] = evaluate(
        rl_config.output_dir, config, test
    )
    for name, (e1, e2) in {
        "SFT only (same compute)": (sft_energy, sft_only_energy),
        f"SFT + RRHF ({script.rl_steps} steps)": (sft_energy, rl_energy),
    }.items():
        rows[name].update(
            train_time_s=e1.seconds + e2.seconds,
            energy_kj=e1.kilojoules + e2.kilojoules,
            peak_w=max(e1.peak_watts, e2.peak_watts),
            energy_method=e1.method,
        )
    p = mcnemar_exact(passed["rrhf"], passed["sft"])
    notes = [
        f"Held-out: {len(test)} problems ({script.dataset}, test split); 95% intervals in brackets (Wilson for rates, "
        f"bootstrap for SP/RTR).",
        f"'SFT only' continued SFT for the same wall-clock time as the RRHF stage ({rl_energy.seconds:.0f}s, "
        f"{extra_steps} more steps), from the same {sft_steps}-step SFT checkpoint.",
        f"Pass rate, SFT + RRHF vs SFT only: exact McNemar p = {p:.3g} "
        + ("(a significant difference)." if p < 0.05 else "(within noise: no significant difference)."),
    ]
    if sft_energy.method == "estimate":
        notes.append(
            "* Energy and peak power are ESTIMATES (CPU-seconds x 12 W per busy core): no RAPL or NVML here."
        )
    json_path, md_path = write_results(
        os.path.join(out, "results"),
        rows,
        notes,
        extra={
            "rl_curve": curve,
            "sft_loss": sft_losses,
            "sft_only_loss": sft_only_losses,
            "wall_time_s": time.monotonic() - started,
        },
    )
    plot_rl_curves(curve, os.path.join(out, "rl_curves.png"))
    # Whether SFT had plateaued before the comparison: the continuation is numbered after stage 1.
    continued = [{**p, "step": p["step"] + sft_steps} for p in sft_only_losses]
    plot_loss_curves(
        {"stage 1: SFT": sft_losses, "stage 2b: SFT only (continued)": continued},
        os.path.join(out, "sft_loss.png"),
    )
    final = os.path.join(out, "final_model")
    trainer.save_model(final)
    with open(md_path) as fh:
        print(fh.read())
    written = [
        json_path,
        md_path,
        os.path.join(out, "rl_curves.png"),
        os.path.join(out, "sft_loss.png"),
        final,
    ]
    print(f"wrote {', '.join(written)} in {time.monotonic() - started:.0f}s")
    if config.push_to_hub:
        trainer.push_to_hub(dataset_name=script.dataset)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
