"""The wire format, OpenRLHF's ``reward_func``, veRL's ``compute_score`` and the async TRL reward, on the real
sandbox. Where OpenRLHF or veRL is importable, their own loading and calling code drives the wrappers."""

from __future__ import annotations

import asyncio
import doctest
import json
import time

import pytest
from test_rewards import one_grpo_step  # tests/ is on sys.path under pytest's default import mode

from perfrl_trl import cli_serve
from perfrl_trl.execution import ExecutionConfig, resolve_isolation
from perfrl_trl.integrations import openrlhf as openrlhf_integration
from perfrl_trl.integrations import protocol
from perfrl_trl.integrations import verl as verl_integration
from perfrl_trl.integrations.protocol import RequestError, make_label, parse_label, response_text
from perfrl_trl.rewards import AsyncUnitTestRewardFunction, UnitTestRewardFunction, async_unit_test
from perfrl_trl.serve import config as serve_config


def no_sandbox() -> str | None:
    """Why the sandbox cannot run here, or None."""
    try:
        resolve_isolation("auto")
    except RuntimeError as exc:
        return f"no safe sandbox on this machine: {exc}"
    return None


_NO_SANDBOX = no_sandbox()
needs_sandbox = pytest.mark.skipif(_NO_SANDBOX is not None, reason=str(_NO_SANDBOX))

LABEL = json.dumps({"tests": [{"input": "2\n", "output": "4\n"}], "input_code": None})
RIGHT, WRONG = "print(2 * int(input()))", "print(int(input()) + 1)"
CHEAP = ExecutionConfig(workers=1, n_trials=3, timeout_s=2.0)


@pytest.fixture(scope="module")
def reward():
    return UnitTestRewardFunction(execution_config=CHEAP)


@pytest.mark.parametrize(
    ("query", "prompt", "expected"),
    [
        ("P:\nprint(1)<|im_end|>", "P:\n", ("print(1)", True)),
        ("P:\nprint(1)<|im_end|><|endoftext|>\n", "P:\n", ("print(1)", True)),
        ("P:\nprint(1)</s>", "P:\n", ("print(1)", True)),
        ("print(1)", None, ("print(1)", True)),
        # A tokenizer that does not give the prompt back exactly: what follows the stripped prompt.
        (" P: print(1)", "P: ", (" print(1)", False)),
        ("other text print(1)", "P:", ("other text print(1)", False)),
        # A special-looking token inside the program is the program's business.
        ("P:\nprint('<|x|>')", "P:\n", ("print('<|x|>')", True)),
    ],
)
def test_the_response_is_the_query_after_its_prompt(query, prompt, expected):
    assert response_text(query, prompt) == expected


@pytest.mark.parametrize(
    ("label", "field"),
    [
        ("{", "ground_truth"),
        ("[1]", "ground_truth"),
        ('{"input_code": "x"}', "ground_truth.tests"),
        ('{"tests": "x"}', "ground_truth.tests"),
        ('{"tests": [{"input": "", "output": 1}]}', "ground_truth.tests[0]['output']"),
        ('{"tests": [{"input": "", "output": ""}], "input_code": []}', "ground_truth.input_code"),
    ],
)
def test_a_bad_label_names_its_field(label, field):
    with pytest.raises(RequestError) as info:
        parse_label(label, where="ground_truth")
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")


def test_labels_may_come_decoded_and_make_label_round_trips():
    tests = [{"input": "", "output": "1"}]
    assert parse_label({"tests": tests, "input_code": "print(1)"}) == (tests, "print(1)")
    assert parse_label(make_label(tests, "print('é')")) == (tests, "print('é')")
    with pytest.raises(ValueError, match=r"tests\[0\] must be a dict"):
        make_label([{"input": ""}])


@needs_sandbox
@pytest.mark.parametrize(
    "module", [protocol, serve_config, cli_serve, openrlhf_integration, verl_integration, async_unit_test]
)
def test_doctests(module):
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


@needs_sandbox
def test_verl_compute_score_and_its_per_sample_deadline(reward):
    compute_score = verl_integration.make_compute_score(reward, timeout_s=5)
    out = compute_score("pie", f"Sure:\n```python\n{RIGHT}\n```", LABEL, extra_info={"index": 0})
    assert out == {
        "score": 1.3, "tier": 3.0, "passed": 1.0, "faster": 0.0, "timed_out": 0.0, "too_long": 0.0,
        "sandbox_error": 0.0,
    }  # fmt: skip
    assert compute_score("pie", WRONG, LABEL)["score"] == 1.0
    with pytest.raises(RequestError, match=r"^ground_truth\.tests: missing"):
        compute_score("pie", RIGHT, "{}")
    # A judgement slower than the deadline: R2's value at the deadline, flagged; its verdict lands in the cache.
    late = verl_integration.make_compute_score(reward, timeout_s=0.1)
    sleeper = "import time\ntime.sleep(0.4)\nprint(5)"  # wrong: one run, no timing trials
    t0 = time.monotonic()
    out = late("pie", sleeper, LABEL)
    assert (out["score"], out["timed_out"]) == (1.0, 1.0) and time.monotonic() - t0 < 0.35
    time.sleep(0.6)
    hits = reward.executor.stats["cache_hits"]
    out = late("pie", sleeper, LABEL)
    assert (out["score"], out["timed_out"], reward.executor.stats["cache_hits"]) == (1.0, 0.0, hits + 1)


@needs_sandbox
def test_openrlhf_reward_func(reward):
    reward_func = openrlhf_integration.make_reward_func(reward)
    prompts = ["Double:\n", "Double:\n", "Double:\n"]
    queries = [p + q for p, q in zip(prompts, (RIGHT, WRONG, "print(2 * int(input())" + "#" * 200_000))]
    out = reward_func(queries, prompts, [LABEL] * 3)
    assert out["rewards"] == [1.3, 1.0, 0.0] and out["extra_logs"]["too_long"] == [0.0, 0.0, 1.0]
    with pytest.raises(RequestError, match=r"^labels: 1 entries for 3 queries"):
        reward_func(queries, prompts, [LABEL])


@needs_sandbox
def test_openrlhf_loads_and_calls_the_file_form():
    """OpenRLHF's ``SingleTurnAgentExecutor`` loads ``reward_func`` from the file by path and calls it."""
    agent = pytest.importorskip(
        "openrlhf.utils.agent",
        reason="OpenRLHF is not installed (pip install --no-deps openrlhf, + pylatexenc)",
    )
    executor = agent.SingleTurnAgentExecutor(openrlhf_integration.__file__)
    out = asyncio.run(executor._fetch_rewards_via_func(["Double:\n" + RIGHT], ["Double:\n"], [LABEL]))
    assert out[0]["rewards"] == [1.3]


@needs_sandbox
def test_verl_loads_and_calls_compute_score():
    """veRL's ``get_custom_reward_fn`` loads ``compute_score`` by path; called as its reward managers do."""
    reward_mod = pytest.importorskip(
        "verl.trainer.ppo.reward",
        reason="veRL is not installed (pip install --no-deps verl, + tensordict, omegaconf, codetiming, ...)",
    )
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        {"reward": {"custom_reward_function": {"path": verl_integration.__file__, "name": "compute_score"}}}
    )
    fn = reward_mod.get_custom_reward_fn(config)
    result = fn(data_source="pie", solution_str=RIGHT, ground_truth=LABEL, extra_info={"num_turns": None})
    assert result["score"] == 1.3


@needs_sandbox
def test_async_reward_judges_off_the_event_loop():
    from trl.trainer.utils import is_async_callable  # the check TRL's GRPOTrainer makes

    reward = AsyncUnitTestRewardFunction(execution_config=CHEAP)
    assert is_async_callable(reward) and not is_async_callable(UnitTestRewardFunction(execution_config=CHEAP))
    sleeper = "import time\ntime.sleep(0.15)\nprint(2 * int(input()))"
    tests = [{"input": "2\n", "output": "4\n"}]

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        rewards = await reward(prompts=["p", "p"], completions=[sleeper, WRONG], tests=[tests, tests])
        task.cancel()
        return rewards, ticks

    rewards, ticks = asyncio.run(main())
    assert rewards == [1.3, 1.0]
    assert ticks >= 10  # the loop kept running while the sandbox judged (3 runs of 0.15 s at least)


@needs_sandbox
def test_trl_grpo_trainer_awaits_the_async_reward(tmp_path):
    """One GRPO step of TRL's own trainer, with the async reward as its reward function."""
    slow = "n = int(input())\ns = 0\nfor i in range(n + 1):\n    s += i\nprint(s)\n"
    tests = [{"input": "7\n", "output": "28\n"}]
    calls = []

    class Recording(AsyncUnitTestRewardFunction):
        async def __call__(self, prompts=None, completions=None, **columns):
            values = await super().__call__(prompts, completions, **columns)
            calls.append((len(completions), sorted(columns), values))
            return values

    rows = [{"prompt": "Faster:\n" + slow, "tests": tests, "input_code": slow}] * 2
    trainer = one_grpo_step(tmp_path, Recording(execution_config=CHEAP), rows)
    assert calls, "GRPOTrainer never awaited the reward"
    n, columns, values = calls[0]
    assert {"tests", "input_code"} <= set(columns) and len(values) == n == 2
    assert all(v in (0.0, 1.0, 1.3, 2.0) for v in values)
    assert "rewards/unit_test_reward/mean" in trainer.state.log_history[0]
