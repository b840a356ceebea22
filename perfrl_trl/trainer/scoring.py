"""Scoring candidates with TRL-style reward functions (the "score" step of Figure 1).

The unit-test reward runs in the sandbox in background threads: candidates are submitted as soon as
they are generated, so execution overlaps the generation of the next ones. Any other reward callable
is called once all candidates exist. A reward that raises, or returns ``None``, costs only the
candidates concerned their reward (the R2 value), with a warning; it never stops training.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..rewards import UnitTestRewardFunction

if TYPE_CHECKING:
    from ..execution import Verdict

logger = logging.getLogger(__name__)


@dataclass
class PendingScores:
    """Candidates of a batch as they are generated, with the sandbox work already under way."""

    prompts: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    futures: dict[int, list[Future | None]] = field(default_factory=dict)


class CandidateScorer:
    """Weighted sum of reward functions over candidates, with unit-test rewards started early.

    Args:
        reward_funcs: TRL-style callables ``f(prompts, completions, **columns) -> list[float | None]``.
        weights: One weight per reward function.
        failure_value: The reward given to a candidate whose reward computation failed (R2 by default).
    """

    def __init__(self, reward_funcs: Sequence[Callable], weights: Sequence[float], failure_value: float):
        if len(weights) != len(reward_funcs):
            raise ValueError(f"got {len(weights)} reward weights for {len(reward_funcs)} reward functions")
        self.reward_funcs, self.weights, self.failure_value = list(reward_funcs), list(weights), failure_value

    @property
    def unit_test_reward(self) -> UnitTestRewardFunction | None:
        return next((f for f in self.reward_funcs if isinstance(f, UnitTestRewardFunction)), None)

    def start(self) -> PendingScores:
        return PendingScores(futures={i: [] for i in range(len(self.reward_funcs))})

    def add(
        self,
        pending: PendingScores,
        prompts: list[str],
        completions: list[str],
        rows: list[int],
        columns: dict,
    ):
        """Register candidates (``rows`` index into ``columns``) and start their sandbox runs."""
        pending.prompts += prompts
        pending.completions += completions
        pending.rows += rows
        for i, func in enumerate(self.reward_funcs):
            if isinstance(func, UnitTestRewardFunction):
                try:
                    tests = [columns[func.tests_column][r] for r in rows]
                    baselines = columns.get(func.baseline_column)
                    base = [baselines[r] for r in rows] if baselines is not None else None
                    pending.futures[i] += func.submit(completions, tests, base)
                except (KeyError, ValueError, TypeError) as exc:
                    raise ValueError(f"cannot score candidates with {func.__name__}: {exc}") from exc

    def finish(
        self, pending: PendingScores, columns: dict
    ) -> tuple[list[float], list[list[Verdict | None] | None]]:
        """Wait for the rewards.

        Returns:
            The weighted rewards, and per reward function its sandbox verdicts, one per candidate (``None`` for a
            candidate whose scoring failed), or ``None`` for a reward function that is not a unit-test reward.
        """
        total = [0.0] * len(pending.completions)
        verdicts: list[list[Verdict | None] | None] = []
        for i, (func, weight) in enumerate(zip(self.reward_funcs, self.weights)):
            if isinstance(func, UnitTestRewardFunction):
                found = [_result(fut, func.__name__) for fut in pending.futures[i]]  # each future read once
                values = [self.failure_value if v is None else func.reward_of(v) for v in found]
                verdicts.append(found)
            else:
                values = self._call(func, pending, columns)
                verdicts.append(None)
            for j, value in enumerate(values):
                total[j] += weight * value
        return total, verdicts

    def _call(self, func: Callable, pending: PendingScores, columns: dict) -> list[float]:
        """A reward callable on every candidate; on failure, candidate by candidate."""
        name = getattr(func, "__name__", type(func).__name__)
        cols = {k: [v[r] for r in pending.rows] for k, v in columns.items()}
        try:
            values = list(func(prompts=pending.prompts, completions=pending.completions, **cols))
            if len(values) != len(pending.completions):
                raise ValueError(f"returned {len(values)} values for {len(pending.completions)} completions")
        except Exception as exc:
            logger.warning("reward %s failed on a batch (%s); scoring its candidates one by one", name, exc)
            values = []
            for j in range(len(pending.completions)):
                try:
                    one = {k: [v[j]] for k, v in cols.items()}
                    values.append(
                        func(prompts=[pending.prompts[j]], completions=[pending.completions[j]], **one)[0]
                    )
                except Exception as exc_one:
                    logger.warning(
                        "reward %s failed on a candidate, which gets the R2 value: %s", name, exc_one
                    )
                    values.append(None)
        return [self.failure_value if v is None or not math.isfinite(float(v)) else float(v) for v in values]


def _result(fut: Future, name: str) -> Verdict | None:
    try:
        return fut.result()
    except Exception as exc:  # the executor never raises for a program; this is a bug or a bad row
        logger.warning("%s: scoring a candidate failed, which gets the R2 value: %s", name, exc)
        return None
