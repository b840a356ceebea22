"""UnitTestRewardFunction: tiers, values, the TRL reward contract, and TRL's GRPOTrainer using it."""

from __future__ import annotations

import math

import pytest
from datasets import Dataset

from perfrl_trl import UnitTestRewardFunction
from perfrl_trl.execution import ExecutionConfig
from perfrl_trl.rewards import completion_to_code

SLOW = "n = int(input())\ns = 0\nfor i in range(n + 1):\n    s += i\nprint(s)\n"
FAST = "n = int(input())\nprint(n * (n + 1) // 2)\n"
TESTS = [{"input": "300000\n", "output": f"{300000 * 300001 // 2}\n"}, {"input": "7\n", "output": "28\n"}]


@pytest.fixture(scope="module")
def reward():
    return UnitTestRewardFunction(execution_config=ExecutionConfig(n_trials=3, timeout_s=2.0, workers=2))


def test_the_four_tiers_and_default_values(reward):
    completions = ["print(", "print(1 / 0)", SLOW + "\n# same algorithm\n", FAST]
    details = reward.score(completions, [TESTS] * 4, [SLOW] * 4)
    assert [d.tier for d in details] == ["R1", "R2", "R3", "R4"]
    assert [d.reward for d in details] == [0.0, 1.0, 1.3, 2.0]
    assert details[1].status == "runtime_error" and "ZeroDivisionError" in details[1].error
    assert details[3].speedup > 1.1 and details[3].runtime < details[3].baseline_runtime
    assert details[3].n_passed == details[3].n_tests == 2


def test_wrong_output_timeout_and_partial_pass_are_r2(reward):
    wrong = "print(int(input()) + 1)"
    hang = "import time\ntime.sleep(60)"
    half = "n = int(input())\nprint(28 if n == 7 else 0)"
    details = reward.score([wrong, hang, half], [TESTS] * 3, [SLOW] * 3)
    assert [d.tier for d in details] == ["R2", "R2", "R2"]
    assert [d.status for d in details] == ["wrong_answer", "timeout", "wrong_answer"]


def test_values_are_configurable_and_validated():
    custom = UnitTestRewardFunction(values=(-1, 0, 0.5, 3), execution_config=ExecutionConfig(n_trials=3))
    assert custom(None, ["print("], tests=[TESTS]) == [-1.0]
    with pytest.raises(ValueError, match="non-decreasing"):
        UnitTestRewardFunction(values=(0, 2, 1, 3))
    with pytest.raises(ValueError, match="four tiers"):
        UnitTestRewardFunction(values=(0, 1, 2))


def test_graded_mode_ranks_faster_programs_higher(reward):
    graded = UnitTestRewardFunction(graded=True, execution_config=reward.config, executor=reward.executor)
    d = graded.score([FAST], [TESTS], [SLOW])[0]
    assert d.tier == "R4"
    expected = 2.0 + 0.5 * min(math.log2(d.speedup), math.log2(16.0))
    assert d.reward == pytest.approx(expected) and d.reward > 2.0


def test_trl_signature_and_clear_errors(reward):
    out = reward(
        ["p1", "p2"], [FAST, "print("], tests=[TESTS, TESTS], input_code=[SLOW, SLOW], problem_id=["a", "b"]
    )
    assert out == [2.0, 0.0]
    with pytest.raises(KeyError, match="needs the dataset column 'tests'"):
        reward(["p"], [FAST], input_code=[SLOW])
    with pytest.raises(ValueError, match=r"row 0: column 'tests' is empty"):
        reward(["p"], [FAST], tests=[[]], input_code=[SLOW])
    with pytest.raises(ValueError, match="1 completions but 2 rows"):
        reward(["p"], [FAST], tests=[TESTS, TESTS])


def test_completion_forms():
    assert completion_to_code("print(1)") == "print(1)"
    assert completion_to_code("Here:\n```python\nprint(2)\n```\nDone") == "print(2)\n"
    assert completion_to_code([{"role": "assistant", "content": "print(3)"}]) == "print(3)"


@pytest.mark.slow
def one_grpo_step(tmp_path, reward_funcs, rows):
    """One step of TRL's own `GRPOTrainer` on a tiny random decoder with `reward_funcs`, sync or async."""
    from trl import GRPOConfig, GRPOTrainer

    from perfrl_trl.models import create_pretrained, load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(create_pretrained("decoder", "tiny", tmp_path / "m"))
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=8,
        max_steps=1,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    trainer.train()
    return trainer


def test_works_as_reward_funcs_of_trl_grpo_trainer(tmp_path, reward):
    rows = [{"prompt": "Write faster version:\n" + SLOW, "tests": TESTS, "input_code": SLOW}] * 4
    calls = []

    class Recording(UnitTestRewardFunction):
        def __call__(self, prompts=None, completions=None, **columns):
            values = super().__call__(prompts, completions, **columns)
            calls.append((len(completions), sorted(columns), values))
            return values

    recording = Recording(execution_config=reward.config, executor=reward.executor)
    trainer = one_grpo_step(tmp_path, recording, rows)
    assert calls, "GRPOTrainer never called the reward"
    n, columns, values = calls[0]
    assert {"tests", "input_code"} <= set(columns) and len(values) == n
    assert all(v in (0.0, 1.0, 1.3, 2.0) for v in values)
    logged = trainer.state.log_history[0]
    assert any(k.startswith("rewards/unit_test_reward") for k in logged), logged
