"""``UnitTestRewardFunction``: PerfRL's four-tier reward, as a TRL reward function."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..execution import (
    DEFAULT_TIER_REWARDS,
    ExecutionConfig,
    Executor,
    Tier,
    Verdict,
    get_executor,
    validate_tests,
    validate_tier_rewards,
)

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def completion_to_code(completion: str | list | dict) -> str:
    """The program in a completion: plain text, TRL's conversational form, or a fenced code block.

    Example:
        ```python
        >>> completion_to_code([{"role": "assistant", "content": "```python\\nprint(1)\\n```"}])
        'print(1)\\n'
        ```
    """
    if isinstance(completion, dict):
        completion = completion.get("content", "")
    elif isinstance(completion, list):
        completion = "".join(m.get("content", "") if isinstance(m, dict) else str(m) for m in completion)
    if not isinstance(completion, str):
        raise TypeError(f"a completion must be a str or chat messages, got {type(completion).__name__}")
    match = _FENCE.search(completion)
    return match.group(1) if match else completion


@dataclass
class RewardDetails:
    """One candidate's score and why. ``tier`` is "R1".."R4"; ``runtime`` and ``baseline_runtime`` are the cost
    summed over the tests: CPU seconds, or instructions when ``cost`` is ``"instructions"`` (then ``counter``
    names what counted them)."""

    tier: str
    reward: float
    passed: bool
    status: str
    error: str | None
    n_passed: int
    n_tests: int
    runtime: float | None
    baseline_runtime: float | None
    speedup: float | None
    isolation: str | None
    cost: str = "cpu_time"
    counter: str | None = None


class UnitTestRewardFunction:
    """PerfRL's reward: run each completion against the row's unit tests in the sandbox, and time it.

    Tiers (paper's values by default): R1 does not compile (0), R2 fails a test by error, timeout,
    memory or wrong output (1), R3 passes every test (1.3), R4 passes and is faster than the row's slow
    program by ``margin`` with a significant difference over the timing trials (2).

    With ``graded=True``, an R4 value also grows with the measured speed-up,
    ``r4 + graded_weight * min(log2(speedup), log2(graded_cap))``, so two correct and faster programs
    are ranked by how much faster they are. Below R4 nothing changes.

    It follows TRL's reward-function contract, ``f(prompts, completions, **columns) -> list[float]``,
    reading the tests and the slow program from dataset columns, so it also works as a
    ``reward_funcs`` entry of TRL's ``GRPOTrainer``.

    Args:
        values: Rewards of R1, R2, R3 and R4 (non-decreasing).
        margin: Required speed-up for R4; overrides ``execution_config.margin`` (default PIE's 1.10).
        graded: Add the speed-up bonus within R4.
        graded_weight: Bonus per doubling of speed.
        graded_cap: Speed-ups beyond this earn no more bonus.
        tests_column: Dataset column with ``[{"input", "output"}, ...]`` per row.
        baseline_column: Dataset column with the slow program per row.
        execution_config: Sandbox and timing settings (``margin`` and ``cost`` here override its own).
        cost: What "faster" is measured in, overriding ``execution_config.cost``: ``"cpu_time"`` (CPU seconds
            over repeated trials) or ``"instructions"`` (instructions counted once under valgrind, the same on
            every machine; docs/cost.md).
        executor: An existing :class:`~perfrl_trl.execution.Executor` to share.

    Example:
        ```python
        >>> from perfrl_trl import UnitTestRewardFunction
        >>> reward = UnitTestRewardFunction()
        >>> tests = [[{"input": "4\\n", "output": "10\\n"}]]
        >>> reward(["p"], ["n = int(input())\\nprint(n * (n + 1) // 2)"], tests=tests,
        ...        input_code=["print(sum(range(int(input()) + 1)))"])  # correct; too small to be faster
        [1.3]
        ```
    """

    def __init__(
        self,
        values: Sequence[float] = DEFAULT_TIER_REWARDS,
        margin: float | None = None,
        graded: bool = False,
        graded_weight: float = 0.5,
        graded_cap: float = 16.0,
        tests_column: str = "tests",
        baseline_column: str = "input_code",
        execution_config: ExecutionConfig | None = None,
        executor: Executor | None = None,
        cost: str | None = None,
    ):
        values = validate_tier_rewards(values, where="values")
        if graded_cap <= 1 or graded_weight < 0:
            raise ValueError("graded_cap must be > 1 and graded_weight >= 0")
        self.values = values
        self.graded, self.graded_weight, self.graded_cap = graded, graded_weight, graded_cap
        self.tests_column, self.baseline_column = tests_column, baseline_column
        config = execution_config or ExecutionConfig()
        self.config = config if margin is None else dataclasses.replace(config, margin=margin)
        if cost is not None:
            self.config = dataclasses.replace(self.config, cost=cost)
        self._executor = executor
        # TRL names the reward's logged metrics after this attribute.
        self.__name__ = "unit_test_reward"

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = get_executor(self.config)
        return self._executor

    def reward_of(self, verdict: Verdict) -> float:
        """The scalar reward of a verdict."""
        value = self.values[verdict.tier - 1]
        if self.graded and verdict.tier == Tier.R4 and verdict.speedup:
            value += self.graded_weight * min(math.log2(verdict.speedup), math.log2(self.graded_cap))
        return value

    def _details(self, verdict: Verdict) -> RewardDetails:
        return RewardDetails(
            tier=verdict.tier_name,
            reward=self.reward_of(verdict),
            passed=verdict.passed,
            status=verdict.status,
            error=verdict.error,
            n_passed=verdict.n_passed,
            n_tests=verdict.n_tests,
            runtime=verdict.runtime,
            baseline_runtime=verdict.baseline_runtime,
            speedup=verdict.speedup,
            isolation=verdict.isolation,
            cost=verdict.cost,
            counter=verdict.counter,
        )

    def _jobs(self, completions: Sequence, tests: Sequence, baselines: Sequence | None) -> list[tuple]:
        if len(tests) != len(completions):
            raise ValueError(
                f"got {len(completions)} completions but {len(tests)} rows of {self.tests_column!r}"
            )
        if baselines is not None and len(baselines) != len(completions):
            raise ValueError(
                f"got {len(completions)} completions but {len(baselines)} rows of {self.baseline_column!r}"
            )
        jobs = []
        for i, completion in enumerate(completions):
            row_tests = validate_tests(tests[i], where=f"row {i}: column {self.tests_column!r}")
            baseline = baselines[i] if baselines is not None else None
            jobs.append((completion_to_code(completion), row_tests, baseline))
        return jobs

    def submit(self, completions: Sequence, tests: Sequence, baselines: Sequence | None = None) -> list:
        """Start scoring in the background; returns one ``Future`` of a :class:`Verdict` per completion."""
        return [self.executor.submit(*job) for job in self._jobs(completions, tests, baselines)]

    def score(
        self,
        completions: Sequence,
        tests: Sequence,
        baselines: Sequence | None = None,
        progress: bool = False,
    ) -> list[RewardDetails]:
        """Score completions and return the details: tier, reward, tests passed, runtimes, speed-up, error.

        Args:
            completions: Programs (strings, chat messages, or text with a fenced code block).
            tests: One test list per completion.
            baselines: One slow program per completion (``None``: no timing comparison, at most R3).
            progress: Show a progress bar.
        """
        jobs = self._jobs(completions, tests, baselines)
        verdicts = self.executor.judge_many(jobs, progress=progress)
        return [self._details(v) for v in verdicts]

    def _columns(
        self, completions: Sequence | None, columns: dict
    ) -> tuple[Sequence, Sequence, Sequence | None]:
        """The completions, tests and baselines of a TRL call (shared with the async subclass)."""
        if completions is None:
            raise ValueError(f"{type(self).__name__} needs `completions`")
        if self.tests_column not in columns:
            raise KeyError(
                f"{type(self).__name__} needs the dataset column {self.tests_column!r} (a list of "
                f"{{'input', 'output'}} per row); the columns passed were {sorted(columns)}"
            )
        baselines = columns.get(self.baseline_column)
        if baselines is None:
            logger.warning(
                "no %r column: candidates are not timed against a baseline (R4 is impossible)",
                self.baseline_column,
            )
        return completions, columns[self.tests_column], baselines

    def __call__(
        self, prompts: Sequence | None = None, completions: Sequence | None = None, **columns
    ) -> list[float]:
        completions, tests, baselines = self._columns(completions, columns)
        return [d.reward for d in self.score(completions, tests, baselines)]
