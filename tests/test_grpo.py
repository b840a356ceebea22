"""The GRPO arm's pieces: TRL's GRPOConfig matched to an RRHF run, and the reward that logs each update."""

from __future__ import annotations

import doctest

import pytest

from perfrl_trl import RRHFConfig, UnitTestRewardFunction
from perfrl_trl.execution import ExecutionConfig
from perfrl_trl.models import BUNDLED_CHECKPOINT
from perfrl_trl.trainer import grpo as grpo_module
from perfrl_trl.trainer.grpo import LoggedUnitTestReward, grpo_arguments, train_grpo

SLOW = "n = int(input())\ns = 0\nfor i in range(n + 1):\n    s += i\nprint(s)\n"
FAST = "n = int(input())\nprint(n * (n + 1) // 2)\n"
TESTS = [{"input": "300000\n", "output": f"{300000 * 300001 // 2}\n"}, {"input": "7\n", "output": "28\n"}]


def test_doctests():
    assert doctest.testmod(grpo_module).failed == 0


def test_grpo_arguments_match_the_rrhf_candidates_batches_and_sampling(tmp_path):
    config = RRHFConfig(
        str(tmp_path), num_random_samples=3, num_greedy_samples=0, per_device_train_batch_size=4,
        gradient_accumulation_steps=2, temperature=0.7, top_k=20, learning_rate=3e-5, seed=5, use_cpu=True,
    )  # fmt: skip
    args = grpo_arguments(config, str(tmp_path / "grpo"), save_strategy="steps", save_steps=3)
    assert (args.num_generations, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (
        3,
        12,
        2,
    )
    assert (args.temperature, args.top_k, args.learning_rate, args.seed) == (0.7, 20, 3e-5, 5)
    assert args.lr_scheduler_type.value == "constant" and args.beta == 0.0 and args.save_steps == 3
    one = RRHFConfig(str(tmp_path), num_random_samples=1, num_greedy_samples=0, use_cpu=True)
    with pytest.raises(ValueError, match="at least 2 completions per prompt"):
        grpo_arguments(one, str(tmp_path / "grpo"))


def test_logged_reward_returns_the_graded_rewards_and_logs_each_call_by_group():
    reward = UnitTestRewardFunction(
        graded=True, execution_config=ExecutionConfig(n_trials=3, timeout_s=2.0, workers=2)
    )
    logged = LoggedUnitTestReward(reward, num_generations=2)
    # Two groups: one whose completions differ (R1 and R4), one whose two completions tie (both R2).
    completions = ["print(", FAST, "print(1 / 0)", "print(2 / 0)"]
    values = logged(["p"] * 4, completions, tests=[TESTS] * 4, input_code=[SLOW] * 4)
    assert values[0] == 0.0 and values[1] > 2.0  # R1; R4 with its speed-up bonus
    assert values[2] == values[3] == 1.0
    assert logged.log == [
        {"step": 1, "compile_rate": 0.75, "pass_rate": 0.25, "opt_rate": 0.25, "groups_without_signal": 0.5}
    ]
    logged(["p"] * 2, [FAST, FAST], tests=[TESTS] * 2, input_code=[SLOW] * 2)
    assert [e["step"] for e in logged.log] == [1, 2] and logged.log[1]["pass_rate"] == 1.0
    with pytest.raises(KeyError, match="needs the dataset column 'tests'"):
        logged(["p"], ["print(1)"], input_code=[SLOW])


def test_train_grpo_names_an_encoder_decoder_start(tmp_path):
    config = RRHFConfig(str(tmp_path), use_cpu=True)
    with pytest.raises(ValueError, match="GRPO needs a causal LM"):
        train_grpo(str(BUNDLED_CHECKPOINT), config, train_dataset=None, seconds=1.0)
