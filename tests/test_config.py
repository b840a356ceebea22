"""Defaults, command-line parsing and validation of `RRHFConfig`."""

import dataclasses

import pytest
from transformers import HfArgumentParser

from perfrl_trl.trainer import RRHFConfig


def test_defaults(tmp_path):
    cfg = RRHFConfig(output_dir=str(tmp_path))
    assert (cfg.num_random_samples, cfg.num_greedy_samples, cfg.include_target) == (2, 1, True)
    assert cfg.num_candidates_per_prompt == 4
    assert (cfg.temperature, cfg.top_k, cfg.top_p) == (1.0, 50, 1.0)
    assert (cfg.max_prompt_length, cfg.max_completion_length) == (512, 512)
    assert (cfg.rank_loss_weight, cfg.length_normalize, cfg.length_penalty) == (1.0, True, 1.0)
    assert (cfg.rank_margin, cfg.rank_on_differing_tokens) == (0.0, False)
    assert cfg.reward_tier_values == (0.0, 1.0, 1.3, 2.0)
    assert cfg.speedup_margin == pytest.approx(1.10)
    assert cfg.tie_priority == ["random", "greedy", "target"]
    assert (cfg.eval_num_beams, cfg.eval_num_return_sequences) == (4, 2)
    assert cfg.reward_weights is None and cfg.generation_kwargs is None
    assert cfg.generation_batch_size == cfg.per_device_train_batch_size
    assert cfg.remove_unused_columns is False and cfg.logging_steps == 10
    assert cfg.execution_config_kwargs() == {"timeout_s": 5.0, "n_trials": 5, "workers": None, "margin": 1.10}


def test_execution_kwargs_are_merged(tmp_path):
    cfg = RRHFConfig(output_dir=str(tmp_path), speedup_margin=1.5, execution_kwargs={"memory_mb": 512})
    assert cfg.execution_config_kwargs()["margin"] == 1.5
    assert cfg.execution_config_kwargs()["memory_mb"] == 512


def test_cli_round_trip(tmp_path):
    parser = HfArgumentParser(RRHFConfig)
    (cfg,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir", str(tmp_path),
            "--num_random_samples", "3",
            "--no_include_target",
            "--tie_priority", "greedy", "random", "target",
            "--reward_weights", "1.0", "0.5",
            "--reward_r3", "1.5",
            "--rank_on_differing_tokens",
            "--generation_kwargs", '{"do_sample": true, "min_new_tokens": 2}',
        ]
    )  # fmt: skip
    assert cfg.num_random_samples == 3 and cfg.include_target is False
    assert cfg.tie_priority == ["greedy", "random", "target"]
    assert cfg.reward_weights == [1.0, 0.5]
    assert cfg.reward_tier_values == (0.0, 1.0, 1.5, 2.0)
    assert cfg.rank_on_differing_tokens is True
    assert cfg.generation_kwargs == {"do_sample": True, "min_new_tokens": 2}

    # to_dict() -> parse_dict() gives the same config back (hub_token is redacted by to_dict).
    as_dict = {k: v for k, v in cfg.to_dict().items() if k != "hub_token"}
    (again,) = parser.parse_dict(as_dict)
    for f in dataclasses.fields(RRHFConfig):
        if f.init and f.name != "hub_token":
            assert getattr(again, f.name) == getattr(cfg, f.name), f.name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_random_samples": -1}, "num_random_samples"),
        ({"num_greedy_samples": -1}, "num_greedy_samples"),
        ({"num_greedy_samples": 2}, "num_greedy_samples"),
        ({"num_random_samples": 0, "num_greedy_samples": 0, "include_target": False}, "no candidates"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"no_repeat_ngram_size": -2}, "no_repeat_ngram_size"),
        ({"max_prompt_length": 0}, "max_prompt_length"),
        ({"max_completion_length": 0}, "max_completion_length"),
        ({"max_completion_length": -5}, "max_completion_length"),
        ({"generation_batch_size": 0}, "generation_batch_size"),
        ({"eval_num_beams": 0}, "eval_num_beams"),
        ({"eval_num_beams": 2, "eval_num_return_sequences": 3}, "eval_num_return_sequences"),
        ({"eval_num_return_sequences": 0}, "eval_num_return_sequences"),
        ({"reward_r2": 1.5}, "non-decreasing"),
        ({"reward_r1": 3.0}, "non-decreasing"),
        ({"reward_r4": 1.0}, "non-decreasing"),
        ({"speedup_margin": 0.9}, "speedup_margin"),
        ({"rank_loss_weight": -0.1}, "rank_loss_weight"),
        ({"rank_margin": -1.0}, "rank_margin"),
        ({"length_penalty": -1.0}, "length_penalty"),
        ({"tie_priority": ["random", "beam"]}, "tie_priority"),
        ({"tie_priority": ["random", "random"]}, "tie_priority"),
        ({"reward_weights": []}, "reward_weights"),
        ({"execution_timeout_s": 0.0}, "execution_timeout_s"),
        ({"execution_n_trials": 0}, "execution_n_trials"),
        ({"execution_workers": 0}, "execution_workers"),
        ({"generation_kwargs": "not json"}, "generation_kwargs"),
    ],
)
def test_validation_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RRHFConfig(output_dir=str(tmp_path), **kwargs)


def test_equal_tiers_and_partial_priority_are_allowed(tmp_path):
    cfg = RRHFConfig(output_dir=str(tmp_path), reward_r3=1.0, tie_priority=["Target"])
    assert cfg.reward_tier_values == (0.0, 1.0, 1.0, 2.0)
    assert cfg.tie_priority == ["target"]


def test_single_candidate_warns(tmp_path):
    with pytest.warns(UserWarning, match="single candidate"):
        RRHFConfig(output_dir=str(tmp_path), num_random_samples=0, num_greedy_samples=0)


def test_loss_options_speed_aware_ranking_and_tuning_threshold(tmp_path):
    """Speed-aware ranking uses the reward's own margin; the tuning threshold defaults to R3 (imitate only
    programs that pass) with unit-test rewards, and to none with rewards on another scale."""
    config = RRHFConfig(output_dir=str(tmp_path), speedup_margin=1.2, reward_r3=1.5)
    options = config.loss_options()
    assert (options.speedup_margin, options.tuning_min_reward) == (1.2, 1.5)
    assert config.loss_options(unit_test_rewards_only=False).tuning_min_reward is None
    paper = RRHFConfig(output_dir=str(tmp_path), rank_by_speedup=False, tuning_min_reward=0.0).loss_options()
    assert (paper.speedup_margin, paper.tuning_min_reward) == (None, 0.0)
