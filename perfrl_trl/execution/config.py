"""Settings of the executor: limits, timing and comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from .counters import COST_MODES, COUNT_TIMEOUT_EXTRA_S, COUNT_TIMEOUT_FACTOR, COUNTER_MEMORY_MB
from .tiers import DEFAULT_MARGIN
from .timing import TimingRule

ISOLATION_LEVELS = ("bwrap", "rlimits")


@dataclass(frozen=True)
class ExecutionConfig:
    """How candidate programs are run, compared and timed.

    Args:
        timeout_s: Wall-clock limit of one run on one test, in seconds.
        cpu_limit_s: CPU-time limit (``RLIMIT_CPU``) of one run; defaults to ``timeout_s`` rounded up.
        memory_mb: Address-space limit (``RLIMIT_AS``) of one run, in MiB.
        file_size_mb: Largest file a run may write (``RLIMIT_FSIZE``), in MiB.
        disk_mb: Size of the sandbox's private tmpfs (bubblewrap level only), in MiB.
        max_processes: ``RLIMIT_NPROC`` of a run: processes and threads it may create.
        max_open_files: ``RLIMIT_NOFILE`` of a run.
        output_limit_bytes: Cap on stdout and on stderr of one run; going over it fails the run.
        n_trials: Timed repeats over all tests, after one untimed correctness run (with
            ``sequential_timing``, a cap: a candidate stops as soon as its verdict is clear).
        margin: A candidate is faster only if ``baseline_time / candidate_time >= margin``.
        alpha: Significance level of the one-sided Mann-Whitney test that the speed-up must also pass.
        min_time_diff_s: Smallest difference of median CPU time (summed over tests) that counts as real.
        sequential_timing: Spend trials only while the verdict is open: a candidate whose correctness run
            took twice the cached baseline's slowest trial stops there, one clearly not faster after two
            measurements (its correctness run counts as one), a decisive win (``decisive_speedup``) too;
            any other goes to runs alternated with the baseline on one worker, which stop at a probe
            after three runs when the win is not there, or at a first look on a complete win, else
            after ``n_trials + 1`` runs a side, with the significance level split between the looks so
            that false "faster" verdicts stay below ``alpha`` (docs/concepts.md). ``False`` gives the
            fixed rule: ``n_trials`` timed runs, then ``n_trials`` paired runs a side for an apparent win.
        decisive_speedup: With ``sequential_timing``, a candidate whose every trial is at least this many
            times faster than the fastest trial of its cached baseline (a baseline of at least 50 ms) is
            faster without the paired runs: a win that size is beyond what load moves CPU time (docs/
            concepts.md). ``None`` sends every apparent win to the paired runs.
        float_tol: Absolute tolerance when two output tokens both parse as floats.
        workers: Parallel sandboxed workers; defaults to this process's share of the usable cores (all of them,
            divided by ``$LOCAL_WORLD_SIZE`` under ``torchrun`` / ``accelerate launch``).
        isolation: ``"auto"`` (the strongest available), ``"bwrap"`` or ``"rlimits"``.
        cache_size: Verdicts kept in memory for identical (program, tests, baseline) requests, and baseline
            timings kept for reuse (each least recently used first out).
        extra_env: Extra environment variables for the programs (the environment is otherwise scrubbed).
        ray_address: Judge on Ray actors on a cluster's CPU nodes instead of this machine's cores (needs
            ``pip install perfrl_trl[ray]``): ``"auto"`` (Ray's: ``$RAY_ADDRESS``, else the cluster ``ray start``
            started here) or a cluster's address; ``workers`` is then the number of actors, one CPU each
            (default: the cluster's CPUs over ``$WORLD_SIZE``). ``None`` (default) judges locally, whatever the
            environment says. See ``perfrl_trl.execution.ray_backend`` and docs/recipes/ray.md.
        cost: What "faster" is measured in. ``"cpu_time"`` (default): CPU seconds, over repeated trials with a
            significance test. ``"instructions"``: instructions the program executes, counted once per test
            with valgrind inside the same sandbox, start-up left out and the hash seed fixed, so the same
            program gets the same count on any machine; R4 iff ``count * margin <= baseline count``. Needs
            valgrind (``apt-get install valgrind``); see docs/cost.md.
        valgrind: Path of the valgrind binary for ``cost="instructions"``; ``None`` finds it on ``$PATH``.
        count_timeout_s: Wall-clock limit of one counted run (one test under valgrind, about 20x slower than
            a plain run, plus its start-up); defaults to ``30 * timeout_s + 30``.

    Example:
        ```python
        >>> from perfrl_trl.execution import ExecutionConfig
        >>> ExecutionConfig(timeout_s=2.0, n_trials=3).margin
        1.1
        >>> ExecutionConfig(cost="instructions").count_timeout
        180.0
        ```
    """

    timeout_s: float = 5.0
    cpu_limit_s: float | None = None
    memory_mb: int = 1024
    file_size_mb: int = 16
    disk_mb: int = 64
    max_processes: int = 32
    max_open_files: int = 64
    output_limit_bytes: int = 1 << 20
    n_trials: int = 5
    margin: float = DEFAULT_MARGIN
    alpha: float = 0.05
    min_time_diff_s: float = 2e-4
    sequential_timing: bool = True
    decisive_speedup: float | None = 5.0
    float_tol: float = 1e-3
    workers: int | None = None
    isolation: str = "auto"
    cache_size: int = 100_000
    extra_env: dict[str, str] = field(default_factory=dict)
    ray_address: str | None = None
    cost: str = "cpu_time"
    valgrind: str | None = None
    count_timeout_s: float | None = None

    def __post_init__(self):
        if self.cost not in COST_MODES:
            raise ValueError(f"ExecutionConfig.cost must be one of {COST_MODES}, got {self.cost!r}")
        if self.valgrind is not None and (not isinstance(self.valgrind, str) or not self.valgrind):
            raise ValueError(f"ExecutionConfig.valgrind must be None or a path, got {self.valgrind!r}")
        if self.count_timeout_s is not None and (
            not isinstance(self.count_timeout_s, (int, float)) or self.count_timeout_s <= 0
        ):
            raise ValueError(
                f"ExecutionConfig.count_timeout_s must be None or a positive number, got {self.count_timeout_s!r}"
            )
        positive = ("timeout_s", "memory_mb", "file_size_mb", "disk_mb", "max_processes", "max_open_files")
        for name in (*positive, "output_limit_bytes", "n_trials", "margin", "cache_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"ExecutionConfig.{name} must be a positive number, got {value!r}")
        if self.margin < 1.0:
            raise ValueError(f"ExecutionConfig.margin must be >= 1.0, got {self.margin!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"ExecutionConfig.alpha must be in (0, 1), got {self.alpha!r}")
        if self.float_tol < 0 or self.min_time_diff_s < 0:
            raise ValueError("ExecutionConfig.float_tol and min_time_diff_s must be >= 0")
        # With n trials a side, complete separation gives the smallest one-sided p-value, 1 / C(2n, n).
        if 1 / math.comb(2 * int(self.n_trials), int(self.n_trials)) > self.alpha:
            raise ValueError(
                f"ExecutionConfig.n_trials={self.n_trials} can never show a significant speed-up at "
                f"alpha={self.alpha} (use n_trials >= 3 at alpha 0.05), so no program could ever be R4"
            )
        if not isinstance(self.sequential_timing, bool):
            raise ValueError(
                f"ExecutionConfig.sequential_timing must be True or False, got {self.sequential_timing!r}"
            )
        if self.decisive_speedup is not None and (
            not isinstance(self.decisive_speedup, (int, float)) or self.decisive_speedup < 2 * self.margin
        ):
            raise ValueError(
                "ExecutionConfig.decisive_speedup must be None or at least twice the margin "
                f"({2 * self.margin:g}): a decisive win must lie well beyond the noise of CPU time, "
                f"got {self.decisive_speedup!r}"
            )
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"ExecutionConfig.workers must be >= 1 or None, got {self.workers!r}")
        if self.ray_address is not None and (not isinstance(self.ray_address, str) or not self.ray_address):
            raise ValueError(
                f"ExecutionConfig.ray_address must be None or a Ray address ('auto', 'host:port'), got "
                f"{self.ray_address!r}"
            )
        if self.isolation not in ("auto", *ISOLATION_LEVELS):
            raise ValueError(
                f"ExecutionConfig.isolation must be 'auto' or one of {ISOLATION_LEVELS}, got {self.isolation!r}"
            )

    @property
    def num_workers(self) -> int:
        """Sandbox worker processes: ``workers``, else one per core of this process's share (``execution.cores``)."""
        from .cores import process_share

        return self.workers if self.workers is not None else process_share()

    def rlimits(self) -> dict[str, int]:
        cpu = self.cpu_limit_s if self.cpu_limit_s is not None else self.timeout_s
        return {
            "RLIMIT_AS": int(self.memory_mb) << 20,
            "RLIMIT_CPU": max(1, int(cpu + 0.999)),
            "RLIMIT_FSIZE": int(self.file_size_mb) << 20,
            "RLIMIT_NOFILE": int(self.max_open_files),
            "RLIMIT_NPROC": int(self.max_processes),
            "RLIMIT_CORE": 0,
        }

    @property
    def count_timeout(self) -> float:
        """Wall-clock limit of one counted run: ``count_timeout_s``, else ``30 * timeout_s + 30``."""
        if self.count_timeout_s is not None:
            return float(self.count_timeout_s)
        return COUNT_TIMEOUT_FACTOR * self.timeout_s + COUNT_TIMEOUT_EXTRA_S

    def count_rlimits(self) -> dict[str, int]:
        """The rlimits of a counted run: valgrind's own memory on top of ``memory_mb``, its time limit as CPU."""
        return {
            **self.rlimits(),
            "RLIMIT_AS": (int(self.memory_mb) + COUNTER_MEMORY_MB) << 20,
            "RLIMIT_CPU": max(1, int(self.count_timeout + 0.999)),
        }

    def timing_rule(self) -> TimingRule:
        """The settings the timing rules read."""
        return TimingRule(self.n_trials, self.margin, self.alpha, self.min_time_diff_s, self.decisive_speedup)

    def key(self) -> tuple:
        """What a cached verdict depends on."""
        # Where a verdict is computed does not change what it means: every actor runs the same rule on one node.
        skip = {"workers", "cache_size", "isolation", "ray_address"}
        return tuple((f.name, repr(getattr(self, f.name))) for f in fields(self) if f.name not in skip)
