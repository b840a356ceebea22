"""OpenRLHF's Python-file remote reward: ``reward_func(queries, prompts, labels, **kwargs)``.

OpenRLHF loads a ``reward_func`` from a ``.py`` file given as its remote reward (``--reward.remote_url``, named
``--remote_rm_url`` before) and calls it from a thread for each batch of rollouts. Point it at a file of yours
that imports this one (or at this file itself, for the defaults)::

    # reward.py
    from perfrl_trl.execution import ExecutionConfig
    from perfrl_trl.integrations.openrlhf import make_reward_func
    from perfrl_trl.rewards import UnitTestRewardFunction

    reward_func = make_reward_func(UnitTestRewardFunction(execution_config=ExecutionConfig(n_trials=5)))

The labels (``--label_key``) are the JSON strings of :mod:`perfrl_trl.integrations.protocol`. For a reward
served over HTTP instead, see ``perfrl-trl serve`` (docs/recipes/openrlhf.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Absolute imports: OpenRLHF loads this file by its path, as a module outside the package.
from perfrl_trl.integrations._default import default_reward
from perfrl_trl.integrations.protocol import (
    DEFAULT_MAX_PROGRAM_CHARS,
    DEFAULT_TIMEOUT_S,
    judge_samples,
    parse_request,
)
from perfrl_trl.rewards import UnitTestRewardFunction


def make_reward_func(
    reward: UnitTestRewardFunction | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    max_program_chars: int = DEFAULT_MAX_PROGRAM_CHARS,
) -> Callable[..., dict]:
    """An OpenRLHF ``reward_func`` judging with ``reward``.

    Args:
        reward: The reward to judge with (its values, graded bonus and executor); default: one with default
            settings, shared by the process.
        timeout_s: Longest wait for one call's verdicts; a sample not judged by then gets R2's value and
            ``extra_logs["timed_out"] = 1`` (its judgement goes on and is cached). ``None``: wait as long as
            it takes.
        max_program_chars: Longer responses are not run and get R1's value.

    Example:
        ```python
        >>> from perfrl_trl.integrations.openrlhf import make_reward_func
        >>> reward_func = make_reward_func()
        >>> label = '{"tests": [{"input": "2", "output": "4"}]}'
        >>> reward_func(["Double it:\\nprint(2 * int(input()))"], ["Double it:\\n"], [label])["rewards"]
        [1.3]

        ```
    """

    def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence, **kwargs) -> dict:
        """Rewards of OpenRLHF's queries: ``{"rewards": [...], "scores": [...], "extra_logs": {...}}``."""
        body = {
            "query": list(queries),
            "prompts": None if prompts is None else list(prompts),
            "labels": None if labels is None else list(labels),
        }
        samples = parse_request(body, max_program_chars=max_program_chars)
        return judge_samples(reward or default_reward(), samples, timeout_s)[0]

    return reward_func


reward_func = make_reward_func()
