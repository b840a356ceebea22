"""The bundled checkpoint, regenerated: SFT from scratch on problems no evaluation split contains, then packaged.

    accelerate launch examples/pretrain_checkpoint.py                   # the shipped settings (~1 h 45 min)
    accelerate launch examples/pretrain_checkpoint.py --stage train     # only the training
    accelerate launch examples/pretrain_checkpoint.py --stage package   # only the evaluation and packaging
    cp -r outputs/pretrain_checkpoint/checkpoint/. perfrl_trl/models/checkpoint/   # then install it

Stages (`main` runs them in this order): 1. the training problems, `pretraining_problems` of the pretraining
seed, minus any whose slow program is among the evaluation seed's first problems; 2. SFT of a new small T5
(written to `<output_dir>/sft`, with a checkpoint every `--save_steps`); 3. the trained model exported in its
shipped form (bf16 weights, loaded as float32), which is the form evaluated on the held-out `test` and
`test_ood` splits; 4. the saved checkpoints' validation pass rates, the training curve; 5. the package: the
model card (`perfrl_trl.models.checkpoint_card`), the training manifest and curve beside the weights in
`<output_dir>/checkpoint`, and `<output_dir>/pretrain_curve.png`. Every default is in `CHECKPOINT` below: the
settings the shipped checkpoint was trained with (its README.md says with what data, for how long, and how it
scores). The comparison that starts from it is examples/train_pie.py.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from accelerate import PartialState
from train_pie import (  # this script's folder is on sys.path
    BASE,
    SFT_FROM_SCRATCH,
    ModelArguments,
    new_model,
    sft,
)
from trl import TrlParser

from perfrl_trl.comparison import evaluate_models
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.data.benchmark.build import to_dataset
from perfrl_trl.data.benchmark.pretraining import (
    EVAL_RESERVE,
    EVAL_SEED,
    PRETRAIN_SEED,
    pretraining_problems,
    program_digest,
)
from perfrl_trl.models import checkpoint_card, export_checkpoint
from perfrl_trl.reporting import plot_pretrain_curve
from perfrl_trl.trainer import RRHFConfig

# The shipped checkpoint's settings; flags given on the command line (or in --config) still win.
CHECKPOINT = dict(
    BASE,
    **SFT_FROM_SCRATCH,  # a small T5 from its config; batch 16, learning rate 1e-3, bf16 autocast
    output_dir="outputs/pretrain_checkpoint",
    n_per_family=300,  # 11,680 training problems after the exclusion
    sft_steps=4500,
    sft_seconds=5400,
    warmup_steps=200,
    save_steps=500,
    logging_steps=50,
    max_eval=390,  # the whole test split of eval_per_family=100
    val_size=78,
)


@dataclass
class PretrainArguments:
    # Defaults: CHECKPOINT's (see parse_args).
    stage: str = field(default="all", metadata={"help": "'all', 'train' or 'package' (evaluate and export)."})
    n_per_family: int = field(default=0, metadata={"help": "Training problems generated per family."})
    families: str | None = field(
        default=None, metadata={"help": "Train on these comma-separated families only (default: all but held-out)."}
    )
    sft_steps: int = field(default=0, metadata={"help": "SFT optimizer steps."})
    sft_seconds: float | None = field(default=None, metadata={"help": "SFT wall-clock budget, seconds."})
    sft_bf16: bool = field(default=False, metadata={"help": "SFT under bf16 autocast (faster on CPU too)."})
    eval_per_family: int = field(
        default=100, metadata={"help": "The evaluation benchmark's problems per family (evaluation seed)."}
    )
    max_eval: int = field(default=0, metadata={"help": "Held-out test problems evaluated."})
    ood_eval: int = field(default=200, metadata={"help": "Held-out-family (test_ood) problems evaluated."})
    val_size: int = field(default=0, metadata={"help": "Validation problems for the saved checkpoints' curve."})
    curve_every: int = field(default=1000, metadata={"help": "Evaluate saved checkpoints every this many steps."})


def parse_args():
    parser = TrlParser((PretrainArguments, RRHFConfig, ModelArguments))
    parser.set_defaults(**CHECKPOINT)
    return parser.parse_args_and_config()


def train(script: PretrainArguments, config: RRHFConfig, model_args: ModelArguments, problems, dropped, state):
    """SFT of a new model on `problems`; writes `<output_dir>/sft` and its `sft_result.json`."""
    out, sft_dir = config.output_dir, os.path.join(config.output_dir, "sft")
    data = to_dataset(problems).shuffle(seed=config.seed)
    print(f"pretraining data: {len(data)} problems (seed {PRETRAIN_SEED}; {dropped} shared with evaluation dropped)")
    base = new_model(model_args, os.path.join(out, "base"), config.seed, state)
    started = time.monotonic()  # the recorded time includes loading, tokenizing and saving
    _, result = sft(
        base, sft_dir, config, data, config.learning_rate, script.sft_steps, script.sft_seconds, script.sft_bf16,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=config.warmup_steps, save_strategy="steps", save_steps=config.save_steps, save_only_model=True,
    )  # fmt: skip
    if state.is_main_process:
        with open(os.path.join(sft_dir, "sft_result.json"), "w") as fh:
            json.dump({"steps": result.steps, "seconds": time.monotonic() - started, "losses": result.losses}, fh)


def validation_curve(script, config, sft_dir, export, trained, validation) -> list[dict]:
    """Pass and compile rates of the saved checkpoints (every `curve_every` steps, and the shipped weights last)."""
    saved = sorted(
        (int(d.split("-")[1]), os.path.join(sft_dir, d)) for d in os.listdir(sft_dir) if d.startswith("checkpoint-")
    )
    saved = [(step, path) for step, path in saved if step % script.curve_every == 0]
    if not saved or saved[-1][0] != trained["steps"]:
        saved.append((trained["steps"], export))  # the final point: the shipped weights
    evals = evaluate_models({str(step): path for step, path in saved}, validation, config, compare_to_target=False)
    return [
        {"step": int(step), "pass_rate": e.summary["percent_passed"] / 100,
         "compile_rate": e.summary["percent_compiled"] / 100}
        for step, e in evals.items()
    ]  # fmt: skip


def main():
    script, config, model_args = parse_args()
    state = PartialState()
    out = config.output_dir
    sft_dir, export = os.path.join(out, "sft"), os.path.join(out, "checkpoint")

    # stage 1. the training problems: the pretraining seed's, none of them an evaluation problem
    families = script.families.split(",") if script.families else None
    problems, dropped = pretraining_problems(script.n_per_family, seed=PRETRAIN_SEED, families=families)

    # stage 2. SFT from scratch
    if script.stage in ("all", "train"):
        train(script, config, model_args, problems, dropped, state)
    if script.stage not in ("all", "package"):
        return

    # stage 3. the shipped form (bf16 weights, loaded as float32), judged on the held-out splits
    with open(os.path.join(sft_dir, "sft_result.json")) as fh:
        trained = json.load(fh)
    if state.is_main_process:
        export_checkpoint(sft_dir, export)
    state.wait_for_everyone()
    bench = build_benchmark(n_per_family=script.eval_per_family, seed=EVAL_SEED)
    held_out = {}
    for split, cap in (("test", script.max_eval), ("test_ood", script.ood_eval)):
        rows = bench[split].shuffle(seed=config.seed).select(range(min(cap, len(bench[split]))))
        held_out[split] = evaluate_models({"checkpoint": export}, rows, config, compare_to_target=False)["checkpoint"]

    # stage 4. the curve: saved checkpoints on the validation split (never on test, which decides the figures)
    val = bench["validation"].shuffle(seed=config.seed).select(range(min(script.val_size, len(bench["validation"]))))
    curve = validation_curve(script, config, sft_dir, export, trained, val)
    if not state.is_main_process:
        return

    # stage 5. the package: model card, manifest and curve beside the weights; the curve's plot
    card = checkpoint_card(
        {
            f"test (training families: {len(set(bench['test']['family']))})": held_out["test"].summary,
            "test_ood (held-out families)": held_out["test_ood"].summary,
        },
        config,
        model_size=model_args.model_size,
        dropout_rate=model_args.dropout_rate,
        n_per_family=script.n_per_family,
        seed=PRETRAIN_SEED,
        n_problems=len(problems),
        n_families=len({p["family"] for p in problems}),
        dropped=dropped,
        eval_seed=EVAL_SEED,
        eval_reserve=EVAL_RESERVE,
        heldout_families=set(bench["test_ood"]["family"]),
        steps=trained["steps"],
        seconds=trained["seconds"],
        eval_per_family=script.eval_per_family,
    )
    manifest = {"seed": PRETRAIN_SEED, "n": len(problems), "dropped": dropped,
                "digests": sorted(program_digest(p["input_code"]) for p in problems)}  # fmt: skip
    export_checkpoint(
        sft_dir, export, extra_files={
            "README.md": card,
            "training_manifest.json": json.dumps(manifest) + "\n",
            "training_curve.json": json.dumps({"loss": trained["losses"], "validation": curve}, indent=1) + "\n",
        },
    )  # fmt: skip
    plot_pretrain_curve(trained["losses"], curve, os.path.join(out, "pretrain_curve.png"))
    print(card)
    print(f"wrote {export} and {out}/pretrain_curve.png; install it with: cp -r {export}/. perfrl_trl/models/checkpoint/")


if __name__ == "__main__":
    main()
