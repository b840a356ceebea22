"""The process-wide reward that the framework wrappers judge with unless given one."""

from __future__ import annotations

import threading

from perfrl_trl.rewards import UnitTestRewardFunction

_lock = threading.Lock()
_reward: UnitTestRewardFunction | None = None


def default_reward() -> UnitTestRewardFunction:
    """One :class:`UnitTestRewardFunction` with default settings, made on first use and then shared.

    Its executor is the process-wide one for the default ``ExecutionConfig``, so every wrapper in the process
    shares its sandbox workers and verdict cache.
    """
    global _reward
    with _lock:
        if _reward is None:
            _reward = UnitTestRewardFunction()
        return _reward
