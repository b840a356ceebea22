"""Trainer callbacks the recipes share.

- [`WallClockBudget`]: stops training once a wall-clock budget is spent, at the same optimizer step on every
  rank (the decision is reduced across ranks).
- [`RLCurve`]: records the held-out rates after each RL step and joins them with the trainer's per-step
  candidate rates into the paper's Fig. 2 curve (see `perfrl_trl.reporting.plot_rl_curves`).
"""

from __future__ import annotations

import time
from typing import ClassVar

import torch
from transformers import TrainerCallback


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


class RLCurve(TrainerCallback):
    """The per-RL-step curve of Fig. 2: rates of the candidates generated during each step (an epoch over the
    RL prompts), and the held-out rates measured after it.

    Add it to an [`RRHFTrainer`] that evaluates each epoch; call `trainer.evaluate()` once before training to
    record step 0 (the starting checkpoint). [`history`] then joins both with the trainer's `candidate_log`.

    Example:
        ```python
        >>> curve = RLCurve()  # RRHFTrainer(..., callbacks=[curve]); trainer.evaluate(); trainer.train()
        >>> curve.history([], rl_steps=0)
        []
        ```
    """

    RATES: ClassVar[tuple[str, ...]] = ("compile_rate", "pass_rate", "opt_rate", "truncation_rate", "degenerate_rate")
    EVAL: ClassVar[dict[str, str]] = {
        "eval_percent_passed": "eval_pass_rate",
        "eval_percent_optimized": "eval_opt_rate",
        "eval_percent_compiled": "eval_compile_rate",
        "eval_truncation_rate": "eval_truncation_rate",
    }

    def __init__(self):
        self.points: dict[int, dict[str, float]] = {}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or "eval_percent_passed" not in metrics:
            return
        step = round(state.epoch or 0.0)
        point = {}
        for key, name in self.EVAL.items():
            if key in metrics:
                point[name] = metrics[key] / 100 if key.startswith("eval_percent") else metrics[key]
        self.points[step] = point

    def history(self, candidate_log: list[dict[str, float]], rl_steps: int) -> list[dict]:
        """Step 0 (when evaluated) and steps 1..`rl_steps`: candidate rates (means over the step's batches)
        and held-out rates."""
        out = [{"step": 0, **self.points[0]}] if 0 in self.points else []
        for step in range(1, rl_steps + 1):
            # A step's candidates are made while the epoch counter is in [step - 1, step).
            logs = [r for r in candidate_log if step - 1 <= r.get("epoch", 0.0) < step]
            point: dict = {"step": step}
            for key in self.RATES:
                values = [r[key] for r in logs if key in r]
                point[key] = sum(values) / len(values) if values else None
            point.update(self.points.get(step, {}))
            out.append(point)
        return out
