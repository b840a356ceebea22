"""``AsyncUnitTestRewardFunction``: the unit-test reward as an ``async`` TRL reward function."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .unit_test import UnitTestRewardFunction


class AsyncUnitTestRewardFunction(UnitTestRewardFunction):
    """:class:`UnitTestRewardFunction` with an ``async def __call__``, for TRL's concurrent reward functions.

    TRL (0.27 and later) awaits ``async`` reward functions together on its event loop, so the sandbox judges
    while other reward functions (an LLM judge, a remote model) wait on the network. Judging never runs on
    the event loop: the completions go to the executor's worker threads, and the loop only awaits their
    futures. Same arguments, same rewards and same shared executor and caches as the synchronous class.

    Args:
        *args: As :class:`UnitTestRewardFunction`.
        **kwargs: As :class:`UnitTestRewardFunction`.

    Example:
        ```python
        >>> import asyncio
        >>> from perfrl_trl.rewards import AsyncUnitTestRewardFunction
        >>> reward = AsyncUnitTestRewardFunction()
        >>> tests = [[{"input": "4\\n", "output": "10\\n"}]]
        >>> asyncio.run(reward(["p"], ["n = int(input())\\nprint(n * (n + 1) // 2)"], tests=tests))
        [1.3]

        ```
    """

    async def __call__(  # type: ignore[override]
        self, prompts: Sequence | None = None, completions: Sequence | None = None, **columns
    ) -> list[float]:
        # Checks, column lookups and the warning for a missing baseline column are the synchronous class's.
        completions, tests, baselines = self._columns(completions, columns)
        # Starting the executor (the first call) spawns the sandbox workers: off the loop too.
        futures = await asyncio.to_thread(self.submit, completions, tests, baselines)
        verdicts = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        return [self.reward_of(v) for v in verdicts]
