"""How many CPU cores a process may use, and how many torch threads to give it: the one place that decides.

Standard library only, like the rest of ``perfrl_trl.execution``, so that the sandbox can size its worker pool
with it too.

The policy:

* **Usable cores** are the process's affinity mask (what containers, cpusets and ``taskset`` leave it), else
  ``os.cpu_count()``.
* **A process's share** is the usable cores divided among the processes launched together on this machine
  (``LOCAL_WORLD_SIZE``, set by ``torchrun`` and ``accelerate launch``; 1 otherwise), at least 1. The sandbox
  runs one worker process per core of that share (``ExecutionConfig.num_workers``), so P ranks on one machine
  start as many workers together as it has cores, not P times as many.
* **Torch threads on CPU** are that share when nothing else runs alongside (supervised fine-tuning, beam
  search before judging), and half of it when sandbox runs share the cores with the model (RRHF training,
  ``optimize``): OpenMP threads spin-wait between kernels, and on busy cores that made a tiny model's
  ``generate`` 33x slower on a 2-core machine (16.4 s against 0.49 s with one thread).

An explicit count (``cpu_threads``, ``threads=``) always wins.
"""

from __future__ import annotations

import os

__all__ = ["local_process_count", "process_share", "torch_threads", "usable_cores"]


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask (which containers and ``taskset`` narrow).

    Example:
        ```python
        >>> usable_cores() >= 1
        True

        ```
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def local_process_count() -> int:
    """Processes launched together on this machine (``LOCAL_WORLD_SIZE``), 1 when it is unset or unreadable."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def process_share(local_processes: int | None = None) -> int:
    """This process's cores: the usable cores divided among the processes on this machine, at least 1.

    Args:
        local_processes: Processes sharing this machine; defaults to :func:`local_process_count`.

    Example:
        ```python
        >>> process_share(local_processes=1) == usable_cores()
        True
        >>> process_share(local_processes=usable_cores() + 1)  # more ranks than cores: still one each
        1

        ```
    """
    processes = local_processes if local_processes is not None else local_process_count()
    return max(1, usable_cores() // max(1, processes))


def torch_threads(
    *, sandbox_alongside: bool, requested: int | None = None, local_processes: int | None = None
) -> int:
    """Torch intra-op threads for this process on CPU (see the module's docstring for the policy).

    Args:
        sandbox_alongside: Whether sandbox runs share the cores with the model while it computes; then the
            model gets half of its share.
        requested: An explicit count; returned as is when given.
        local_processes: Processes sharing this machine; defaults to :func:`local_process_count`.

    Example:
        ```python
        >>> torch_threads(sandbox_alongside=False, requested=3)
        3
        >>> torch_threads(sandbox_alongside=True, local_processes=usable_cores())  # one core each, halved
        1

        ```
    """
    if requested:
        return int(requested)
    share = process_share(local_processes)
    return max(1, share // 2) if sandbox_alongside else share
