"""Trainer callbacks the recipes share.

- [`WallClockBudget`]: stops training once a wall-clock budget is spent, at the same optimizer step on every
  rank (the decision is reduced across ranks).
- [`BudgetProgress`]: the progress bar of a run bounded by time and steps, whichever ends it first.
- [`RLCurve`]: records the held-out rates of each evaluation by optimizer update and joins them with the
  trainer's per-update candidate rates into the paper's Fig. 2 curve (see
  `perfrl_trl.reporting.plot_rl_curves`), with held-out points judged after training added by `add_heldout`
  and the candidates' rates smoothed by [`moving_average`].
"""

from __future__ import annotations

import glob
import math
import os
import time
from typing import ClassVar

import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR


def _any_rank(flag: bool) -> bool:
    """True on every rank when it is true on at least one (a no-op outside torch.distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    backend = torch.distributed.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


class WallClockBudget(TrainerCallback):
    """Stop training once a wall-clock budget is spent, at the same optimizer step on every rank.

    Each rank reads its own clock, so ranks would cross the budget at different steps and the one that stops
    first would leave the others waiting in a collective. The decision is therefore reduced across ranks
    (stop when any rank is over budget) after every optimizer step.

    Args:
        seconds (`float`): the budget, counted from `on_train_begin`; must be positive.

    Example:
        ```python
        >>> from perfrl_trl.trainer.callbacks import WallClockBudget
        >>> budget = WallClockBudget(60.0)  # Trainer(..., callbacks=[budget])
        >>> budget.seconds
        60.0
        ```
    """

    def __init__(self, seconds: float):
        if not seconds > 0:
            raise ValueError(f"WallClockBudget.seconds must be > 0, got {seconds!r}")
        self.seconds = float(seconds)
        self.start: float | None = None
        self.elapsed = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self.elapsed = time.monotonic() - self.start
        if _any_rank(self.elapsed >= self.seconds):
            control.should_training_stop = True


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"
    )


UNCAPPED_STEPS = 10**6  # the `max_steps` of a run that only its wall-clock budget ends (no step count shown)


class BudgetProgress(ProgressCallback):
    """The training bar of a run that a wall-clock budget may end before `max_steps`.

    Transformers' bar counts steps towards `max_steps`; under a time budget with a large step cap it would show
    an ETA of days for a run that ends in minutes. This bar fills with whichever share is larger, of the budget
    spent or of the steps done (training stops at the first to reach 100%), and shows both (the steps without
    a cap when `max_steps` is `UNCAPPED_STEPS`, the budget alone ending the run).

    Args:
        seconds (`float`): the wall-clock budget, counted from `on_train_begin` as [`WallClockBudget`] counts it.

    Example:
        ```python
        >>> from perfrl_trl.trainer.callbacks import BudgetProgress
        >>> bar = BudgetProgress(600.0)  # Trainer(...); trainer.remove_callback(ProgressCallback); add this one
        >>> bar.seconds
        600.0
        ```
    """

    SCALE: ClassVar[int] = 1000  # bar units per run

    def __init__(self, seconds: float):
        super().__init__()
        if not seconds > 0:
            raise ValueError(f"BudgetProgress.seconds must be > 0, got {seconds!r}")
        self.seconds = float(seconds)
        self.start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()
        self.current_step = 0
        if state.is_world_process_zero:
            # the text goes in `desc`: tqdm prefixes a postfix with ", "
            self.training_bar = tqdm(
                total=self.SCALE, dynamic_ncols=True, bar_format="{percentage:3.0f}%|{bar}| {desc}"
            )
            self._show(state)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._show(state)

    def _show(self, state) -> None:
        elapsed = time.monotonic() - self.start
        done = max(elapsed / self.seconds, state.global_step / max(state.max_steps, 1))
        self.training_bar.n = min(self.SCALE, round(self.SCALE * done))
        cap = "" if state.max_steps >= UNCAPPED_STEPS else f"/{state.max_steps}"
        self.training_bar.set_description_str(
            f"step {state.global_step}{cap}, {_clock(elapsed)} of {_clock(self.seconds)}"
        )


class RLCurve(TrainerCallback):
    """The per-update curve of Fig. 2: rates of the candidates that fed each optimizer update, and the
    held-out rates measured during training.

    Evaluation points are keyed by `state.global_step`, so step 0 is an evaluation before training (call
    `trainer.evaluate()` once before `trainer.train()` to record the starting checkpoint) and step k the
    evaluation after the k-th update (with `eval_strategy="steps"`, transformers also evaluates after the last
    update, so the curve ends at the trained model). [`history`] joins the points with the trainer's
    `candidate_log` (one entry per update, keyed by its `step`).

    Example:
        ```python
        >>> curve = RLCurve()  # RRHFTrainer(..., callbacks=[curve]); trainer.evaluate(); trainer.train()
        >>> point = curve.history([{"epoch": 0.0, "step": 1, "pass_rate": 0.5}])[0]
        >>> point["step"], point["pass_rate"], point["beats_target_rate"]
        (1, 0.5, None)
        ```
    """

    RATES: ClassVar[tuple[str, ...]] = (
        "compile_rate",
        "pass_rate",
        "opt_rate",
        "truncation_rate",
        "degenerate_rate",
        "beats_target_rate",
        "groups_without_signal",
    )
    EVAL: ClassVar[dict[str, str]] = {
        "eval_percent_passed": "eval_pass_rate",
        "eval_percent_optimized": "eval_opt_rate",
        "eval_percent_compiled": "eval_compile_rate",
        "eval_truncation_rate": "eval_truncation_rate",
        "eval_beats_target_rate": "eval_beats_target_rate",
    }

    # Candidate rates that `history` also smooths (``{rate}_avg``): one update's batch is a handful of prompts,
    # so its rates jump with the prompts drawn; the moving average shows the trend under that noise.
    SMOOTHED: ClassVar[tuple[str, ...]] = ("compile_rate", "pass_rate", "opt_rate", "beats_target_rate")

    def __init__(self):
        self.points: dict[int, dict[str, float]] = {}

    def add_heldout(self, points: dict[int, dict]) -> None:
        """Record held-out points judged outside training (`perfrl_trl.comparison.heldout_curve`), by update."""
        for step, point in points.items():
            self.points[int(step)] = {**self.points.get(int(step), {}), **point}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or "eval_percent_passed" not in metrics:
            return
        point = {"epoch": state.epoch or 0.0}
        for key, name in self.EVAL.items():
            if key in metrics:
                point[name] = metrics[key] / 100 if key.startswith("eval_percent") else metrics[key]
        self.points[state.global_step] = point

    def history(self, candidate_log: list[dict[str, float]], window: int = 8) -> list[dict]:
        """One point per update that has candidates or an evaluation, in update order.

        A point holds ``step``; ``epoch``, the trainer's epoch counter when the update's candidates were made
        (at the evaluation for a point without candidates, such as step 0); the candidate rates of `RATES` (a
        mean over the update's entries when gradient accumulation logs several, `None` when none has the
        rate); and the held-out rates of an evaluation right after the update. Step 0, when evaluated, is the
        model before training.

        Each rate of `SMOOTHED` also gets ``{rate}_avg``, its trailing moving average over `window` points.

        Args:
            candidate_log: `RRHFTrainer.candidate_log`: dicts with ``step`` (the 1-based update they fed),
                ``epoch`` and rates.
            window: Points in each moving average.
        """
        by_step: dict[int, list[dict]] = {}
        for entry in candidate_log:
            by_step.setdefault(int(entry["step"]), []).append(entry)
        out = []
        for step in sorted(set(by_step) | set(self.points)):
            logs = by_step.get(step, [])
            evaluated = dict(self.points.get(step, {}))
            eval_epoch = evaluated.pop("epoch", None)
            point: dict = {
                "step": step,
                "epoch": min(r.get("epoch", 0.0) for r in logs) if logs else eval_epoch,
            }
            if logs:
                for key in self.RATES:
                    values = [r[key] for r in logs if r.get(key) is not None]
                    point[key] = sum(values) / len(values) if values else None
            point.update(evaluated)
            out.append(point)
        for key in self.SMOOTHED:
            for point, avg in zip(out, moving_average([p.get(key) for p in out], window)):
                if key in point:
                    point[f"{key}_avg"] = avg
        return out


def moving_average(values: list[float | None], window: int) -> list[float | None]:
    """Trailing mean of each value and the `window - 1` before it, skipping `None` (a `None` where all are).

    Example:
        ```python
        >>> moving_average([1.0, None, 3.0, 5.0], 2)
        [1.0, 1.0, 3.0, 4.0]
        ```
    """
    if window < 1:
        raise ValueError(f"moving_average: window must be >= 1, got {window!r}")
    out = []
    for i in range(len(values)):
        seen = [v for v in values[max(0, i - window + 1) : i + 1] if v is not None]
        out.append(sum(seen) / len(seen) if seen else None)
    return out


def rl_eval_schedule(
    per_device_batch_size: int,
    gradient_accumulation_steps: int,
    n_prompts: int,
    passes: int,
    points: int | None,
    processes: int,
) -> dict:
    """``TrainingArguments`` fields that evaluate an RL run's validation rows `points` times, evenly over its
    updates (transformers adds one after the last update when it is not on the schedule), or after each pass
    when `points` is None.

    Args:
        per_device_batch_size: Prompts per process per batch.
        gradient_accumulation_steps: Batches per update.
        n_prompts: RL prompts in one pass.
        passes: Passes over them.
        points: Held-out points, or None for one after each pass.
        processes: Data-parallel processes.

    Example:
        ```python
        >>> rl_eval_schedule(8, 1, 512, 1, 4, 1)
        {'eval_strategy': 'steps', 'eval_steps': 16}
        ```
    """
    if points is None:
        return {"eval_strategy": "epoch"}
    batches = math.ceil(n_prompts / (per_device_batch_size * processes))
    updates = passes * math.ceil(batches / gradient_accumulation_steps)
    return {"eval_strategy": "steps", "eval_steps": max(1, math.ceil(updates / points))}


def rl_checkpoint_schedule(
    per_device_batch_size: int,
    gradient_accumulation_steps: int,
    n_prompts: int,
    passes: int,
    points: int | None,
    processes: int,
) -> dict:
    """``TrainingArguments`` fields that save a checkpoint (the model only) wherever [`rl_eval_schedule`] would
    evaluate, and evaluate nothing during training: the curve's held-out points are judged afterwards from those
    checkpoints ([`curve_checkpoints`], `perfrl_trl.comparison.heldout_curve`), so a run's timed training pays
    for none of them. Arguments as for [`rl_eval_schedule`].

    Example:
        ```python
        >>> rl_checkpoint_schedule(8, 1, 512, 1, 4, 1)
        {'eval_strategy': 'no', 'save_strategy': 'steps', 'save_only_model': True, 'save_steps': 16}
        ```
    """
    schedule = rl_eval_schedule(
        per_device_batch_size, gradient_accumulation_steps, n_prompts, passes, points, processes
    )
    saved = {"eval_strategy": "no", "save_strategy": schedule["eval_strategy"], "save_only_model": True}
    if "eval_steps" in schedule:
        saved["save_steps"] = schedule["eval_steps"]
    return saved


def curve_checkpoints(start: str, output_dir: str, last_step: int) -> dict[int, str]:
    """The models of an RL curve by optimizer update: the start (update 0), the checkpoints a run saved in
    `output_dir` under [`rl_checkpoint_schedule`], and the final model saved in `output_dir` itself (`last_step`).
    """
    checkpoints = {0: start, last_step: output_dir}
    for folder in glob.glob(os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-*")):
        checkpoints.setdefault(int(folder.rsplit("-", 1)[1]), folder)
    return checkpoints


def add_wall_clock_budget(trainer, seconds: float) -> WallClockBudget:
    """Bound a built `Trainer` by a wall-clock budget: add a [`WallClockBudget`] and, where the trainer shows the
    default progress bar, put [`BudgetProgress`] in its place.

    Args:
        trainer (`transformers.Trainer`): the trainer, before `train()`.
        seconds (`float`): the budget.

    Returns:
        The [`WallClockBudget`] (its ``elapsed`` is the time trained).
    """
    budget = WallClockBudget(seconds)
    trainer.add_callback(budget)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(BudgetProgress(seconds))
    return budget
