"""What holds from-scratch SFT back on a CPU: a cumulative ladder of settings, each trained for the same wall time.

Each rung adds one change to the one before it, starting from the settings the recipes used before (the
factory's dropout 0.1, batch 8, constant learning rate, one torch thread, random batches, fp32, 128-token
targets), and trains a fresh small T5 on the bundled benchmark for ``--seconds`` of wall-clock time. Then, on
the same held-out validation problems for every rung: the cross-entropy of the targets (all 256 tokens, so
truncation shows), and the pass and compile rates of greedy programs judged in the sandbox. Ratios are
against the first rung. The rungs run one after another in one process (not interleaved: each is a training
run), so the machine's load is printed with each; compare rungs of one run, not across runs.

Usage:
    python benchmarks/sft_efficiency.py                       # all rungs, 300 s each (~45 min)
    python benchmarks/sft_efficiency.py --seconds 120 --rungs baseline dropout0 batch16 threads
    python benchmarks/sft_efficiency.py --out benchmarks/results/sft_efficiency.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from transformers import TrainingArguments

from perfrl_trl.collator import SFTCollator
from perfrl_trl.comparison import evaluate_models
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.data.benchmark.build import to_dataset
from perfrl_trl.data.benchmark.pretraining import pretraining_problems
from perfrl_trl.execution.cores import usable_cores
from perfrl_trl.models import create_pretrained, load_model_and_tokenizer
from perfrl_trl.trainer import RRHFConfig
from perfrl_trl.trainer.sft import length_grouped, supervised_finetune

BASELINE = dict(
    dropout=0.1,
    batch=8,
    schedule="constant_with_warmup",
    threads=1,
    group=False,
    bf16=False,
    max_len=128,
    arch="t5",
)
# (name, change): each rung keeps every change above it.
LADDER = [
    ("baseline", {}),
    ("dropout0", {"dropout": 0.0}),
    ("batch16", {"batch": 16}),
    ("threads", {"threads": 0}),  # 0: all usable cores
    ("length_grouped", {"group": True}),
    ("bf16", {"bf16": True}),
    ("len256", {"max_len": 256}),
    ("cosine", {"schedule": "cosine_with_min_lr"}),
    ("decoder", {"arch": "decoder"}),
]


@torch.no_grad()
def heldout_loss(model, tok, rows, batch=16) -> float:
    """Mean token cross-entropy of the held-out targets, whole (256 tokens), in fp32."""
    collator = SFTCollator(tok, model.config.is_encoder_decoder, 256, 256)
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(rows), batch):
        b = collator([rows[i] for i in range(start, min(start + batch, len(rows)))])
        n = int((b["labels"] != -100).sum())
        total += float(model(**b).loss) * n
        count += n
    model.train()
    return total / count


def run_rung(name, setting, train, val, seconds, out, lr):
    dropout = {"dropout_rate" if setting["arch"] == "t5" else "attention_dropout": setting["dropout"]}
    base = create_pretrained(
        setting["arch"], "small", os.path.join(out, name, "base"), overwrite=True, **dropout
    )
    model, tok = load_model_and_tokenizer(base)
    args = TrainingArguments(
        output_dir=os.path.join(out, name),
        max_steps=100_000,
        learning_rate=lr,
        per_device_train_batch_size=setting["batch"],
        lr_scheduler_type=setting["schedule"],
        lr_scheduler_kwargs={"min_lr_rate": 0.1} if setting["schedule"] == "cosine_with_min_lr" else {},
        warmup_steps=50,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        bf16=setting["bf16"],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **(length_grouped() if setting["group"] else {}),
    )
    if setting["schedule"] == "cosine_with_min_lr":
        # A cosine needs a horizon: the step count the previous rung reached in the same time.
        args.max_steps = setting["horizon"]
    load = os.getloadavg()[0]
    cpu0 = time.process_time()
    threads = setting["threads"] or usable_cores()
    result = supervised_finetune(
        model, tok, train, args, 256, setting["max_len"], seconds=seconds, threads=threads
    )
    cpu = time.process_time() - cpu0
    loss = heldout_loss(model, tok, val)
    result.trainer.save_model(os.path.join(out, name, "model"))
    return {
        "rung": name,
        "steps": result.steps,
        "batch": setting["batch"],
        "seconds": result.seconds,
        "cpu_s": cpu,
        "threads": threads,
        "load_avg": load,
        "train_loss_last": result.losses[-1]["loss"] if result.losses else None,
        "heldout_loss": loss,
        "model": os.path.join(out, name, "model"),
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=300.0, help="wall-clock training budget per rung")
    parser.add_argument(
        "--rungs", nargs="*", default=[n for n, _ in LADDER], help="rungs to run, in ladder order"
    )
    parser.add_argument("--n-train-per-family", type=int, default=60)
    parser.add_argument("--n-eval", type=int, default=78, help="validation problems (2 per family)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default=None, help="write JSON here")
    parser.add_argument("--workdir", default="outputs/sft_efficiency")
    args = parser.parse_args()

    problems, _ = pretraining_problems(args.n_train_per_family)
    train = to_dataset(problems).shuffle(seed=0)
    val = build_benchmark(n_per_family=20, seed=0)["validation"]
    val = val.select(range(min(args.n_eval, len(val))))
    setting, rows, horizon = dict(BASELINE), [], None
    for name, change in LADDER:
        setting.update(change)
        if name not in args.rungs:
            continue
        if setting["schedule"] == "cosine_with_min_lr":
            setting["horizon"] = horizon or 1000
        row = run_rung(name, dict(setting), train, val, args.seconds, args.workdir, args.lr)
        horizon = row["steps"]
        rows.append(row)
        print(json.dumps(row), flush=True)

    config = RRHFConfig(
        os.path.join(args.workdir, "eval"),
        report_to="none",
        use_cpu=True,
        max_completion_length=256,
        max_prompt_length=256,
        eval_num_beams=1,
        eval_num_return_sequences=1,
        generation_batch_size=16,
    )
    evals = evaluate_models(
        {r["rung"]: r["model"] for r in rows}, val, config, compare_to_target=False, n_bootstrap=0
    )
    first = rows[0]
    print(
        f"\n{args.seconds:.0f} s of wall-clock SFT per rung; {len(val)} held-out validation problems, greedy"
    )
    print(
        f"{'rung':15} {'steps':>6} {'ex./s':>8} {'x':>6} {'val loss':>9} {'x':>6} {'pass %':>7} "
        f"{'compile %':>9} {'trunc %':>8} {'load':>5}"
    )
    for r in rows:
        s = evals[r["rung"]].summary
        r.update(
            pass_rate=s["percent_passed"] / 100,
            compile_rate=s["percent_compiled"] / 100,
            truncation_rate=s["truncation_rate"],
        )
        # Examples (not steps) per second: the rungs differ in batch size.
        eps = r["steps"] * r["batch"] / r["seconds"]
        eps0 = first["steps"] * first["batch"] / first["seconds"]
        print(
            f"{r['rung']:15} {r['steps']:>6} {eps:>8.2f} {eps / eps0:>6.2f} "
            f"{r['heldout_loss']:>9.3f} {first['heldout_loss'] / r['heldout_loss']:>6.2f} "
            f"{100 * r['pass_rate']:>7.1f} {100 * r['compile_rate']:>9.1f} {100 * r['truncation_rate']:>8.1f} "
            f"{r['load_avg']:>5.1f}"
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"seconds": args.seconds, "n_eval": len(val), "rungs": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
