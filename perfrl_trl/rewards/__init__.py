"""Reward functions with TRL's contract: ``f(prompts, completions, **columns) -> list[float]``."""

from .unit_test import RewardDetails, UnitTestRewardFunction, completion_to_code

__all__ = ["RewardDetails", "UnitTestRewardFunction", "completion_to_code"]
