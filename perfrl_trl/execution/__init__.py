"""Sandboxed execution and timing of untrusted Python programs (standard library only)."""

from .config import ISOLATION_LEVELS, ExecutionConfig
from .judge import Executor, Verdict, compare_outputs, validate_tests
from .memo import OnceCache
from .ray_backend import RayExecutor  # Ray itself is imported only when a RayExecutor is made
from .sandbox import SandboxError, bwrap_available, resolve_isolation
from .shared import get_executor
from .tiers import DEFAULT_MARGIN, DEFAULT_TIER_REWARDS, Tier, validate_tier_rewards
from .timing import SpeedupDecision, decide_faster, mann_whitney_less

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_TIER_REWARDS",
    "ISOLATION_LEVELS",
    "ExecutionConfig",
    "Executor",
    "OnceCache",
    "RayExecutor",
    "SandboxError",
    "SpeedupDecision",
    "Tier",
    "Verdict",
    "bwrap_available",
    "compare_outputs",
    "decide_faster",
    "get_executor",
    "mann_whitney_less",
    "resolve_isolation",
    "validate_tests",
    "validate_tier_rewards",
]
