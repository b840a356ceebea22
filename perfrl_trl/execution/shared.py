"""One executor per configuration for the whole process: the local pool, or Ray actors when asked for."""

from __future__ import annotations

import atexit
import threading

from .config import ExecutionConfig
from .judge import Executor
from .ray_backend import RayExecutor  # Ray itself is imported only when a RayExecutor is made

_shared: dict[str, Executor] = {}
_shared_lock = threading.Lock()


def get_executor(config: ExecutionConfig | None = None) -> Executor:
    """A process-wide executor for ``config``, started on first use and closed at exit.

    Executors are shared per configuration: rewards and metrics with the same settings share workers
    and verdict caches, and one with other settings never closes an executor that others hold.

    Args:
        config: The settings; defaults to :class:`ExecutionConfig`. With ``ray_address`` set, the executor
            is a :class:`~perfrl_trl.execution.ray_backend.RayExecutor` (same interface, judging on Ray).

    Example:
        ```python
        >>> from perfrl_trl.execution import ExecutionConfig, get_executor
        >>> get_executor(ExecutionConfig(workers=1)) is get_executor(ExecutionConfig(workers=1))
        True
        ```
    """
    config = config or ExecutionConfig()
    key = repr(config)  # every field, including the (unhashable) environment dict
    with _shared_lock:
        if key not in _shared:
            _shared[key] = RayExecutor(config) if config.ray_address is not None else Executor(config)
        return _shared[key]


@atexit.register
def _close_shared() -> None:
    for executor in _shared.values():
        executor.close()
