"""Reward functions with TRL's contract: ``f(prompts, completions, **columns) -> list[float]``."""

from .async_unit_test import AsyncUnitTestRewardFunction
from .unit_test import RewardDetails, UnitTestRewardFunction, completion_to_code

__all__ = ["AsyncUnitTestRewardFunction", "RewardDetails", "UnitTestRewardFunction", "completion_to_code"]
