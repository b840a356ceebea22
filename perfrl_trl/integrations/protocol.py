"""The remote-reward wire format: OpenRLHF's ``{"query", "prompts", "labels"}`` in, rewards out.

One request is a batch of samples. Each query is the prompt followed by the model's response; the program is
read from the response as :class:`~perfrl_trl.UnitTestRewardFunction` reads a completion (a fenced code block
if there is one, else the whole text). Each label names what the program is judged against, the same columns
the reward function takes, as a JSON string (or an already decoded object)::

    {"tests": [{"input": "3\\n", "output": "6\\n"}, ...], "input_code": "<the program to beat>"}

``input_code`` may be missing or ``null``: the program is then judged for correctness only (at most R3).

The server (``perfrl_trl.serve``), OpenRLHF's file form (:mod:`perfrl_trl.integrations.openrlhf`) and veRL's
``compute_score`` (:mod:`perfrl_trl.integrations.verl`) all parse and answer through this module, so the
three judge a sample the same way.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from perfrl_trl.execution import Tier, Verdict, validate_tests
from perfrl_trl.integrations.limits import DEFAULT_MAX_PROGRAM_CHARS, DEFAULT_TIMEOUT_S
from perfrl_trl.rewards import UnitTestRewardFunction, completion_to_code

__all__ = [
    "DEFAULT_MAX_PROGRAM_CHARS",
    "DEFAULT_TIMEOUT_S",
    "RequestError",
    "Sample",
    "answer",
    "judge_samples",
    "make_label",
    "parse_label",
    "parse_request",
    "response_text",
    "submit_samples",
]

# OpenRLHF decodes prompt + response with skip_special_tokens=False, so a response ends with the tokenizer's
# end-of-sequence marker(s): "<|im_end|>", "<|endoftext|>", "</s>", "<eos>", ... Left in, they would make
# every unfenced program a syntax error.
_TRAILING_SPECIAL = re.compile(r"(?:\s*(?:<\|[^<>|\s]{1,40}\|>|</s>|<eos>|<pad>|\[PAD\]))+\s*\Z")

_LABEL_KEYS = ("tests", "input_code")


class RequestError(ValueError):
    """A request that cannot be judged, with the field at fault (``"labels[2].tests[0]"``).

    Args:
        field: Where the problem is, as a path into the request body.
        message: What is wrong there.
        status: The HTTP status the server answers with (400, or 413 for a request over a size limit).
    """

    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


@dataclass(frozen=True)
class Sample:
    """One query of a request, ready to judge.

    ``too_long``: the program is over the length limit and is not run (it gets R1's value). ``prompt_found``:
    the query began with its prompt (else the response was found by the fallback of :func:`response_text`).
    """

    program: str
    tests: list[dict]
    baseline: str | None
    too_long: bool = False
    prompt_found: bool = True


def response_text(query: str, prompt: str | None) -> tuple[str, bool]:
    """The response part of ``query`` (prompt followed by response), without trailing special tokens.

    Decoding the prompt's tokens almost always gives the prompt back, so the query starts with it. Where a
    tokenizer does not round-trip (whitespace, normalisation), the response is what follows the first
    occurrence of the stripped prompt, else the whole query; the second value says whether the exact prefix
    was found.

    Args:
        query: The prompt followed by the response.
        prompt: The prompt, or ``None`` when the query is the response alone.

    Example:
        ```python
        >>> response_text("Make it faster:\\nprint(1)\\nprint(2)<|im_end|>", "Make it faster:\\nprint(1)\\n")
        ('print(2)', True)

        ```
    """
    found = True
    if prompt:
        if query.startswith(prompt):
            query = query[len(prompt) :]
        else:
            found = False
            stripped = prompt.strip()
            at = query.find(stripped) if stripped else -1
            if at >= 0:
                query = query[at + len(stripped) :]
    return _TRAILING_SPECIAL.sub("", query), found


def parse_label(label: object, where: str = "label") -> tuple[list[dict], str | None]:
    """The tests and the baseline of a label (a JSON string or an object), with errors naming ``where``.

    Args:
        label: ``{"tests": [{"input", "output"}, ...], "input_code": str | None}``, as JSON or decoded.
        where: The label's place in the request, for error messages.

    Example:
        ```python
        >>> parse_label('{"tests": [{"input": "", "output": "1"}], "input_code": "print(1)"}')
        ([{'input': '', 'output': '1'}], 'print(1)')

        ```
    """
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except json.JSONDecodeError as exc:
            raise RequestError(where, f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(label, dict):
        raise RequestError(
            where, f"must be an object with 'tests' and 'input_code', got {type(label).__name__}"
        )
    if "tests" not in label:
        raise RequestError(f"{where}.tests", "missing (a list of {'input', 'output'} objects)")
    unknown = sorted(set(label) - set(_LABEL_KEYS))
    if unknown:
        raise RequestError(where, f"unknown key(s) {unknown}; a label has {list(_LABEL_KEYS)}")
    try:
        tests = validate_tests(label["tests"], where=f"{where}.tests")
    except ValueError as exc:
        field, _, message = str(exc).partition(" ")
        raise RequestError(field, message) from None
    baseline = label.get("input_code")
    if baseline is not None and not isinstance(baseline, str):
        raise RequestError(f"{where}.input_code", f"must be a string or null, got {type(baseline).__name__}")
    return tests, baseline


def make_label(tests: Sequence[dict], input_code: str | None = None) -> str:
    """The label of one dataset row (its tests and the program to beat), as the JSON string OpenRLHF's
    ``--data.label_key`` column and veRL's ``reward_model.ground_truth`` carry.

    Args:
        tests: ``[{"input": str, "output": str}, ...]``, at least one.
        input_code: The slow program a candidate must beat for R4 (``None``: correctness only).

    Example:
        ```python
        >>> make_label([{"input": "2\\n", "output": "4\\n"}], "print(2 * int(input()))")
        '{"tests": [{"input": "2\\\\n", "output": "4\\\\n"}], "input_code": "print(2 * int(input()))"}'

        ```
    """
    tests = validate_tests(list(tests))
    if input_code is not None and not isinstance(input_code, str):
        raise ValueError(f"input_code must be a str or None, got {type(input_code).__name__}")
    return json.dumps(
        {"tests": [{"input": t["input"], "output": t["output"]} for t in tests], "input_code": input_code},
        ensure_ascii=False,
    )


def _string_list(body: dict, key: str, required: bool) -> list | None:
    value = body.get(key)
    if value is None:
        if required:
            raise RequestError(key, "missing")
        return None
    if not isinstance(value, list):
        raise RequestError(key, f"must be a list, got {type(value).__name__}")
    return value


def parse_request(
    body: object, max_queries: int | None = None, max_program_chars: int = DEFAULT_MAX_PROGRAM_CHARS
) -> list[Sample]:
    """The samples of a decoded request body ``{"query": [...], "prompts": [...], "labels": [...]}``.

    ``prompts`` may be left out (each query is then the response alone); ``labels`` may not, since a program
    cannot be judged without tests.

    Args:
        body: The decoded JSON body.
        max_queries: Most queries one request may hold (``None``: no limit); over it: a 413 error.
        max_program_chars: Longer responses are not run (``Sample.too_long``).

    Raises:
        RequestError: naming the first field at fault.
    """
    if not isinstance(body, dict):
        raise RequestError("body", f"must be a JSON object, got {type(body).__name__}")
    queries = _string_list(body, "query", required=True)
    prompts = _string_list(body, "prompts", required=False)
    labels = _string_list(body, "labels", required=True)
    if max_queries is not None and len(queries) > max_queries:
        raise RequestError("query", f"{len(queries)} queries, over the limit of {max_queries} a request", 413)
    for key, values in (("prompts", prompts), ("labels", labels)):
        if values is not None and len(values) != len(queries):
            raise RequestError(key, f"{len(values)} entries for {len(queries)} queries")
    samples = []
    for i, query in enumerate(queries):
        if not isinstance(query, str):
            raise RequestError(f"query[{i}]", f"must be a string, got {type(query).__name__}")
        prompt = prompts[i] if prompts is not None else None
        if prompt is not None and not isinstance(prompt, str):
            raise RequestError(f"prompts[{i}]", f"must be a string or null, got {type(prompt).__name__}")
        tests, baseline = parse_label(labels[i], where=f"labels[{i}]")
        response, found = response_text(query, prompt)
        program = completion_to_code(response)
        samples.append(Sample(program, tests, baseline, len(program) > max_program_chars, found))
    return samples


def submit_samples(reward: UnitTestRewardFunction, samples: Sequence[Sample]) -> list:
    """Start judging; one ``Future`` of a :class:`Verdict` per sample, ``None`` for one not run (too long)."""
    executor = reward.executor
    return [None if s.too_long else executor.submit(s.program, s.tests, s.baseline) for s in samples]


def answer(
    reward: UnitTestRewardFunction, samples: Sequence[Sample], verdicts: Sequence[Verdict | None]
) -> dict:
    """The response body: ``{"rewards": [...], "scores": [...], "extra_logs": {name: [...]}}``, in query order.

    A verdict of ``None`` is a sample without one: not run (too long: R1's value) or not judged within the
    deadline (R2's value, as a program that times out in the sandbox; ``extra_logs.timed_out`` says which).
    ``scores`` map the reward to [0, 1] (R1's value to 0, R4's to 1; graded bonuses clipped) for OpenRLHF's
    dynamic filtering. ``extra_logs`` hold numbers only, one per query, as OpenRLHF logs them.

    Args:
        reward: Gives the tier values (and the graded bonus).
        samples: The request's samples.
        verdicts: One verdict (or ``None``) per sample.
    """
    r1, r2, r4 = reward.values[0], reward.values[1], reward.values[3]
    rewards, scores = [], []
    logs: dict[str, list[float]] = {
        k: [] for k in ("tier", "passed", "faster", "timed_out", "too_long", "sandbox_error")
    }
    for sample, verdict in zip(samples, verdicts):
        if verdict is not None:
            value, tier = reward.reward_of(verdict), int(verdict.tier)
        elif sample.too_long:
            value, tier = r1, int(Tier.R1)
        else:
            value, tier = r2, int(Tier.R2)
        rewards.append(value)
        scores.append(min(1.0, max(0.0, (value - r1) / (r4 - r1))) if r4 > r1 else 0.0)
        logs["tier"].append(float(tier))
        logs["passed"].append(float(tier >= Tier.R3))
        logs["faster"].append(float(tier == Tier.R4))
        logs["timed_out"].append(float(verdict is None and not sample.too_long))
        logs["too_long"].append(float(sample.too_long))
        logs["sandbox_error"].append(float(verdict is not None and verdict.status == "sandbox_error"))
    return {"rewards": rewards, "scores": scores, "extra_logs": logs}


def judge_samples(
    reward: UnitTestRewardFunction, samples: Sequence[Sample], timeout_s: float | None = DEFAULT_TIMEOUT_S
) -> tuple[dict, list[Verdict | None]]:
    """Judge samples and wait at most ``timeout_s`` for them all; the response body and the verdicts.

    A sample not judged by the deadline is answered as :func:`answer` says; its judgement goes on in the
    background and lands in the verdict cache, so the same sample asked again is answered from there.
    """
    futures = submit_samples(reward, samples)
    running = [f for f in futures if f is not None]
    concurrent.futures.wait(running, timeout=timeout_s)
    verdicts = [f.result() if f is not None and f.done() else None for f in futures]
    return answer(reward, samples, verdicts), verdicts
