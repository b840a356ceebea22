"""The instruction counter of the ``cost="instructions"`` mode, and its rule for "faster".

CPU time depends on the machine and on its load at the moment of measurement. An instruction count does
not: valgrind executes the program on a synthetic CPU and counts every guest instruction, so one run gives
the same number on any machine with the same interpreter and valgrind (the hash seed fixed). The count
runs inside the same sandbox as every other run: each worker keeps one counting server there, a fresh
interpreter under ``valgrind --tool=cachegrind --cache-sim=no`` (``_count_runner.py``) that forks every counted
run from the same state, and only the program's own part is counted (see that module).

Only valgrind is used. Hardware counters (``perf_event_open``) would be cheaper, but they need a PMU that
most virtual machines and containers do not expose, and their counts move by a few instructions from run to
run; this mode exists for figures that are the same to the last digit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from .tiers import DEFAULT_MARGIN
from .timing import SpeedupDecision

COST_MODES = ("cpu_time", "instructions")

# valgrind keeps its own code cache and tool state in the counted process, so a counted run may use this much
# more address space (RLIMIT_AS) than ``memory_mb``: the program itself gets the same limit as in a plain run.
COUNTER_MEMORY_MB = 512

# Under valgrind a Python program runs about 20x slower than natively, and a worker's first count pays about
# 1.5 s of valgrind's start-up, so a counted run gets this many times the plain run's time limit, plus that.
COUNT_TIMEOUT_FACTOR = 30.0
COUNT_TIMEOUT_EXTRA_S = 30.0

NO_COUNTER_HINT = (
    "cost='instructions' counts instructions with valgrind, and none was found{where}. Install it (Debian/"
    "Ubuntu: apt-get install valgrind; Fedora: dnf install valgrind; conda: conda install -c conda-forge "
    "valgrind), or point ExecutionConfig(valgrind=...) at the binary; or use cost='cpu_time'."
)


@dataclass(frozen=True)
class InstructionCounter:
    """Which counter measures instructions.

    Args:
        path: The ``valgrind`` binary.
        version: What ``valgrind --version`` printed, e.g. ``"valgrind-3.19.0"``.

    Example:
        ```python
        >>> InstructionCounter("/usr/bin/valgrind", "valgrind-3.19.0").name
        'valgrind-3.19.0 cachegrind'
        ```
    """

    path: str
    version: str

    @property
    def name(self) -> str:
        """What verdicts record as their ``counter``."""
        return f"{self.version} cachegrind"

    @property
    def root(self) -> str:
        """The installation's prefix (``/usr`` for ``/usr/bin/valgrind``): the sandbox must see its tools."""
        return os.path.dirname(os.path.dirname(os.path.realpath(self.path)))

    def argv(self, log_fd: int) -> list[str]:
        """valgrind's command line before the program's: count instructions only, report on ``log_fd``."""
        return [
            self.path,
            "--tool=cachegrind",
            "--cache-sim=no",  # counting only: the cache simulation is slower and its result unused
            "--cachegrind-out-file=/dev/null",
            "--vgdb=no",  # no FIFOs in the sandbox's /tmp
            f"--log-fd={log_fd}",
        ]


def find_instruction_counter(valgrind: str | None = None) -> InstructionCounter:
    """The counter to use: ``valgrind`` (a path), else the ``valgrind`` on ``$PATH``.

    Args:
        valgrind: Path of the valgrind binary; ``None`` looks it up on ``$PATH``.

    Raises:
        RuntimeError: if there is no working valgrind, with how to get one.

    Example:
        ```python
        >>> find_instruction_counter().version  # doctest: +SKIP
        'valgrind-3.19.0'
        ```
    """
    return _find(valgrind, os.environ.get("PATH", ""))


@lru_cache(maxsize=16)
def _find(valgrind: str | None, path_env: str) -> InstructionCounter:
    if valgrind is None:
        found = shutil.which("valgrind", path=path_env)
        where = f" on PATH ({path_env or 'empty'})"
    else:
        found = valgrind if os.path.isfile(valgrind) and os.access(valgrind, os.X_OK) else None
        where = f" at {valgrind!r}"
    if found is None:
        raise RuntimeError(NO_COUNTER_HINT.format(where=where))
    try:
        out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(NO_COUNTER_HINT.format(where=f" that runs ({found}: {exc})")) from None
    version = out.stdout.strip()
    if out.returncode != 0 or not version.startswith("valgrind"):
        raise RuntimeError(NO_COUNTER_HINT.format(where=f" that runs ({found} --version said {version!r})"))
    return InstructionCounter(os.path.abspath(found), version)


def decide_by_count(candidate: int, baseline: int, margin: float = DEFAULT_MARGIN) -> SpeedupDecision:
    """The instruction-count rule: faster iff ``candidate * margin <= baseline``; one count of each is enough.

    A count is exact, so there is no noise to test against: no p-value, no minimum difference. The margin is
    taken as the decimal it is written as (1.1 is 11/10, not the float just above it), so a count exactly at
    the margin is faster.

    Args:
        candidate: Instructions of the candidate, summed over the tests.
        baseline: Instructions of the baseline, summed over the same tests.
        margin: Required ratio ``baseline / candidate``.

    Example:
        ```python
        >>> decide_by_count(1_000, 1_100).faster, decide_by_count(1_000, 1_099).faster
        (True, False)
        >>> decide_by_count(5_000, 5_000).speedup
        1.0
        ```
    """
    speedup = baseline / candidate if candidate > 0 else float("inf")
    return SpeedupDecision(speedup, candidate * Fraction(str(margin)) <= baseline, None)
