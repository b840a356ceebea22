"""Supervised fine-tuning on ``prompt -> target_code`` with `transformers.Trainer`, sized for CPUs too.

The recipes use it for stage 1 (SFT before RL), for the "SFT only" arm of the comparison, and to train the
bundled checkpoint. What it adds to a plain `Trainer`: the [`SFTCollator`] (the exact token layout RRHF uses),
length-grouped batches (less padding), an optional wall-clock budget shared by all ranks, every usable core
on CPU, and the loss curve returned as a list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from accelerate import PartialState
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments

from ..collator import SFTCollator
from ..energy import EnergyMeter, EnergyReading
from ..execution.cores import torch_threads
from ..models import load_model_and_tokenizer
from .callbacks import UNCAPPED_STEPS, add_wall_clock_budget

if TYPE_CHECKING:
    from .config import RRHFConfig

logger = logging.getLogger(__name__)


def length_grouped(enabled: bool = True) -> dict[str, object]:
    """`TrainingArguments` keywords for length-grouped batches (or plain random ones), in this transformers
    version's spelling."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length" if enabled else "random"}
    return {"group_by_length": enabled}


def _groups_by_length(args: TrainingArguments) -> bool:
    return getattr(args, "train_sampling_strategy", None) == "group_by_length" or bool(
        getattr(args, "group_by_length", False)
    )


@dataclass
class SFTResult:
    """What [`supervised_finetune`] and [`train_with_collator`] return.

    Args:
        trainer: The `Trainer` (its model holds the final weights).
        steps: Optimizer steps taken.
        seconds: Wall-clock seconds of `trainer.train()`.
        losses: ``[{"step", "loss"}]`` as logged.
        threads: Torch CPU threads used (0 on an accelerator).
    """

    trainer: Trainer
    steps: int
    seconds: float
    losses: list[dict]
    threads: int


def with_lengths(
    dataset, tokenizer: PreTrainedTokenizerBase, prompt_column="prompt", target_column="target_code"
):
    """Add a ``length`` column (prompt + target tokens) so `group_by_length` batches rows of similar size."""
    if "length" in dataset.column_names:
        return dataset

    def count(batch):
        p = tokenizer(batch[prompt_column])["input_ids"]
        t = tokenizer(batch[target_column], add_special_tokens=False)["input_ids"]
        return {"length": [len(a) + len(b) for a, b in zip(p, t)]}

    return dataset.map(count, batched=True, desc="token lengths")


def count_unfit_targets(
    dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_completion_length: int | None,
    target_column="target_code",
) -> int:
    """How many targets do not fit in `max_completion_length` tokens with their EOS; warns once with the count.

    A target cut before its EOS teaches the model not to stop, and such a problem can never pass.

    Example:
        ```python
        >>> from datasets import Dataset
        >>> from perfrl_trl.models import load_tokenizer
        >>> count_unfit_targets(Dataset.from_dict({"target_code": ["print(1)", "x = 1\\n" * 50]}), load_tokenizer(), 32)
        1

        ```
    """
    if max_completion_length is None or target_column not in dataset.column_names or len(dataset) == 0:
        return 0
    targets = [t for t in dataset[target_column] if t is not None]  # tests-only rows have none
    if not targets:
        return 0
    ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
    unfit = sum(len(t) + 1 > max_completion_length for t in ids)
    if unfit:
        logger.warning(
            "%d of %d targets (%.1f%%) do not fit in max_completion_length=%d tokens with their EOS; they are "
            "cut, and the model learns not to stop on them: raise max_completion_length",
            unfit,
            len(ids),
            100 * unfit / len(ids),
            max_completion_length,
        )
    return unfit


def supervised_finetune(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset,
    args: TrainingArguments,
    max_prompt_length: int | None,
    max_completion_length: int | None,
    seconds: float | None = None,
    callbacks: list | None = None,
    threads: int | None = None,
    resume_from_checkpoint: str | bool | None = None,
) -> SFTResult:
    """Cross-entropy fine-tuning on ``prompt -> target_code`` rows.

    Args:
        model: A seq2seq or causal LM (from [`load_model_and_tokenizer`]).
        tokenizer: Its tokenizer.
        train_dataset: A `datasets.Dataset` with ``prompt`` and ``target_code`` columns.
        args: The `TrainingArguments`; with length-grouped batches ([`length_grouped`]) a ``length`` column is added when missing.
            ``remove_unused_columns`` must be False (the collator reads the raw text columns).
        max_prompt_length: Longest prompt in tokens; longer ones keep their start, as generation does.
        max_completion_length: Longest target in tokens, EOS included.
        seconds: Optional wall-clock budget (see [`WallClockBudget`]).
        callbacks: More `TrainerCallback`s.
        threads: Torch CPU threads; default: the usable cores shared among the processes on this machine.
        resume_from_checkpoint: Passed to `Trainer.train`.

    Returns:
        [`SFTResult`].

    Example:
        ```python
        >>> from transformers import TrainingArguments
        >>> from perfrl_trl.data import build_benchmark
        >>> from perfrl_trl.models import build_model, load_tokenizer
        >>> tok = load_tokenizer()
        >>> train = build_benchmark(n_per_family=3, families=["sum_formula"], heldout_families=())["train"]
        >>> args = TrainingArguments("/tmp/sft", max_steps=2, report_to="none", remove_unused_columns=False)
        >>> result = supervised_finetune(build_model("t5", "tiny", tok), tok, train, args, 128, 128)  # doctest: +ELLIPSIS
        {...'train_runtime'...}
        >>> result.steps
        2

        ```
    """
    if args.remove_unused_columns:
        raise ValueError("TrainingArguments.remove_unused_columns must be False for supervised_finetune")
    missing = [c for c in ("prompt", "target_code") if c not in train_dataset.column_names]
    if missing:
        raise ValueError(f"the SFT dataset has no column(s) {missing}; it has {train_dataset.column_names}")
    count_unfit_targets(train_dataset, tokenizer, max_completion_length)
    if _groups_by_length(args):
        train_dataset = with_lengths(train_dataset, tokenizer)
    collator = SFTCollator(
        tokenizer,
        model.config.is_encoder_decoder,
        max_prompt_length,
        max_completion_length,
        prompt_truncation_side="right",
    )
    return train_with_collator(
        model, tokenizer, train_dataset, collator, args, seconds, callbacks, threads, resume_from_checkpoint
    )


def train_with_collator(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset,
    collator,
    args: TrainingArguments,
    seconds: float | None = None,
    callbacks: list | None = None,
    threads: int | None = None,
    resume_from_checkpoint: str | bool | None = None,
) -> SFTResult:
    """The training loop shared by SFT and denoising pretraining: a `Trainer` with `collator`, an optional
    wall-clock budget, and on CPU the process's whole share of the cores (nothing runs in the sandbox then).

    Args:
        model, tokenizer, train_dataset, args, seconds, callbacks, threads: As in [`supervised_finetune`].
        collator: Turns a list of rows into the model's batch (`input_ids`, `attention_mask`, `labels`).
        resume_from_checkpoint: Passed to `Trainer.train` (a `checkpoint-N` folder of `args.output_dir`, or
            `True` for its latest); the wall-clock budget counts from the resumed start.

    Returns:
        [`SFTResult`].
    """
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    if seconds is not None:
        add_wall_clock_budget(trainer, seconds)
    if args.device.type == "cpu":
        # No sandbox runs during SFT, so the process's whole share of the cores goes to the matrix products.
        threads = torch_threads(sandbox_alongside=False, requested=threads)
        torch.set_num_threads(threads)
        logger.info("training on CPU with %d torch threads", threads)
    else:
        threads = 0
    output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    losses = [
        {"step": r["step"], "loss": r["loss"]}
        for r in trainer.state.log_history
        if "loss" in r and "step" in r
    ]
    return SFTResult(
        trainer=trainer,
        steps=trainer.state.global_step,
        seconds=float(output.metrics.get("train_runtime", 0.0)),
        losses=losses,
        threads=threads,
    )


def sft_training_arguments(
    config: RRHFConfig,
    output_dir: str,
    learning_rate: float,
    max_steps: int = 0,
    bf16: bool = False,
    **overrides,
) -> TrainingArguments:
    """`TrainingArguments` for cross-entropy fine-tuning that follow a run's [`RRHFConfig`].

    The batch size, logging, reporting, seed, device and progress bars come from ``config``, so that the SFT
    stages of a recipe train like its RRHF stage; the schedule is a constant learning rate after 20 warm-up
    steps, with length-grouped batches. ``overrides`` replace any of these (a cosine schedule, checkpoints).

    Args:
        config: The run's [`RRHFConfig`].
        output_dir: Where checkpoints (if any) go.
        learning_rate: Peak learning rate.
        max_steps: Optimizer steps; 0 leaves the length to a wall-clock budget (``seconds`` of [`finetune`]).
        bf16: bf16 autocast (on a CPU-only machine this is CPU training, which `TrainingArguments` must be told).
        **overrides: Any other `TrainingArguments` field.

    Example:
        ```python
        >>> from perfrl_trl import RRHFConfig
        >>> args = sft_training_arguments(RRHFConfig("/tmp/run", report_to="none"), "/tmp/run/sft", 1e-3, 10)
        >>> args.max_steps, args.learning_rate, args.lr_scheduler_type.value
        (10, 0.001, 'constant_with_warmup')

        ```
    """
    return TrainingArguments(
        **{
            "output_dir": output_dir,
            "max_steps": max_steps if max_steps > 0 else UNCAPPED_STEPS,
            "learning_rate": learning_rate,
            "per_device_train_batch_size": config.per_device_train_batch_size,
            "logging_steps": config.logging_steps,
            "report_to": config.report_to,
            "save_strategy": "no",
            "remove_unused_columns": False,
            "seed": config.seed,
            "bf16": bf16,
            "use_cpu": config.use_cpu or (bf16 and not torch.cuda.is_available()),
            "lr_scheduler_type": "constant_with_warmup",
            "warmup_steps": 20,
            **length_grouped(),
            "disable_tqdm": config.disable_tqdm,
            **overrides,
        }
    )


def finetune(
    model_dir: str,
    output_dir: str,
    config: RRHFConfig,
    train_dataset,
    learning_rate: float,
    max_steps: int = 0,
    seconds: float | None = None,
    bf16: bool = False,
    resume_from_checkpoint: str | bool | None = None,
    **overrides,
) -> tuple[EnergyReading, SFTResult]:
    """Fine-tune the model in ``model_dir`` on ``prompt -> target_code`` and save it to ``output_dir``.

    The recipes' SFT stages: [`supervised_finetune`] with [`sft_training_arguments`], the prompt and completion
    lengths of ``config``, and the energy it used. Under ``accelerate launch`` the main process writes the
    model and every rank returns once it is written.

    Args:
        model_dir: The starting checkpoint (folder or Hub id).
        output_dir: Where the fine-tuned model goes.
        config: The run's [`RRHFConfig`].
        train_dataset: Rows with ``prompt`` and ``target_code``.
        learning_rate, max_steps, bf16, **overrides: As in [`sft_training_arguments`].
        seconds: Optional wall-clock budget shared by all ranks.
        resume_from_checkpoint: A ``checkpoint-N`` folder of ``output_dir`` (or `True` for its latest).

    Returns:
        The energy reading of the training and the [`SFTResult`].
    """
    model, tok = load_model_and_tokenizer(model_dir)
    args = sft_training_arguments(config, output_dir, learning_rate, max_steps, bf16, **overrides)
    with EnergyMeter(use_gpu=torch.cuda.is_available()) as meter:
        result = supervised_finetune(
            model,
            tok,
            train_dataset,
            args,
            config.max_prompt_length,
            config.max_completion_length,
            seconds=seconds,
            resume_from_checkpoint=resume_from_checkpoint,
        )
    result.trainer.save_model(output_dir)  # the main process writes; the others wait for it below
    state = PartialState()
    state.wait_for_everyone()
    state.print(
        f"SFT: {result.steps} steps in {result.seconds:.0f}s on {result.threads or 'accelerator'} threads"
    )
    return meter.reading, result
