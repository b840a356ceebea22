"""veRL's custom reward: ``compute_score(data_source, solution_str, ground_truth, extra_info=None)``.

veRL loads ``custom_reward_function.name`` from the file ``custom_reward_function.path`` and calls it once per
response, with the decoded response as ``solution_str`` and the row's ``reward_model.ground_truth``. Here the
ground truth is the label of :mod:`perfrl_trl.integrations.protocol`: the JSON string
``{"tests": [{"input", "output"}, ...], "input_code": "<the program to beat>"}``::

    custom_reward_function.path=$(python -c "import perfrl_trl.integrations.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score

Each call waits at most ``timeout_s`` (a per-sample deadline: a judgement that cannot finish never stalls
the run). For other settings, write a file with ``compute_score = make_compute_score(...)``.
"""

from __future__ import annotations

from collections.abc import Callable

# Absolute imports: veRL loads this file by its path, as a module outside the package.
from perfrl_trl.integrations._default import default_reward
from perfrl_trl.integrations.protocol import (
    DEFAULT_MAX_PROGRAM_CHARS,
    DEFAULT_TIMEOUT_S,
    Sample,
    judge_samples,
    parse_label,
    response_text,
)
from perfrl_trl.rewards import UnitTestRewardFunction, completion_to_code


def make_compute_score(
    reward: UnitTestRewardFunction | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    max_program_chars: int = DEFAULT_MAX_PROGRAM_CHARS,
) -> Callable[..., dict]:
    """A veRL ``compute_score`` judging with ``reward``.

    It returns a dict: ``score`` (the reward) and numbers veRL logs beside it, ``tier`` (1-4), ``passed``,
    ``faster``, ``timed_out``, ``too_long`` and ``sandbox_error`` (each 0 or 1).

    Args:
        reward: The reward to judge with; default: one with default settings, shared by the process.
        timeout_s: Longest wait for one sample; one not judged by then gets R2's value and ``timed_out = 1``
            (its judgement goes on and is cached). ``None``: wait as long as it takes.
        max_program_chars: Longer responses are not run and get R1's value.

    Example:
        ```python
        >>> from perfrl_trl.integrations.verl import make_compute_score
        >>> compute_score = make_compute_score()
        >>> label = '{"tests": [{"input": "2", "output": "4"}]}'
        >>> compute_score("pie", "```python\\nprint(2 * int(input()))\\n```", label)["score"]
        1.3

        ```
    """

    def compute_score(
        data_source: str | None,
        solution_str: str,
        ground_truth: object,
        extra_info: dict | None = None,
        **kwargs,
    ) -> dict:
        """The reward of one response, with its tier and flags (see :func:`make_compute_score`)."""
        tests, baseline = parse_label(ground_truth, where="ground_truth")
        if not isinstance(solution_str, str):
            raise TypeError(f"solution_str must be a str, got {type(solution_str).__name__}")
        program = completion_to_code(response_text(solution_str, None)[0])
        sample = Sample(program, tests, baseline, too_long=len(program) > max_program_chars)
        body = judge_samples(reward or default_reward(), [sample], timeout_s)[0]
        return {"score": body["rewards"][0], **{k: v[0] for k, v in body["extra_logs"].items()}}

    return compute_score


compute_score = make_compute_score()
