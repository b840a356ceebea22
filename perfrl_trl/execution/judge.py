"""Program + tests (+ baseline) -> a verdict, in parallel over sandboxed workers, with caches."""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from statistics import median

from .config import ExecutionConfig
from .sandbox import SandboxError, WorkerPool, resolve_isolation
from .timing import (
    NOT_FASTER,
    SpeedupDecision,
    clearly_slower,
    confirm_paired,
    decide_faster,
    decisive_win,
    screen,
)

logger = logging.getLogger(__name__)

TIER_NAMES = {1: "R1", 2: "R2", 3: "R3", 4: "R4"}


def compare_outputs(actual: str, expected: str, float_tol: float = 1e-3) -> bool:
    """PIE's comparison: ``strip()``, then line by line, each token exact or as floats within ``float_tol``.

    Args:
        actual: What the program printed.
        expected: The test's expected output.
        float_tol: Absolute tolerance for tokens that both parse as floats.

    Example:
        ```python
        >>> compare_outputs("3.14159\\n", "3.1416")
        True
        >>> compare_outputs("1 2\\n", "1 3")
        False
        ```
    """
    a_lines = actual.strip().replace("\r\n", "\n").split("\n")
    e_lines = expected.strip().replace("\r\n", "\n").split("\n")
    if len(a_lines) != len(e_lines):
        return False
    for a_line, e_line in zip(a_lines, e_lines):
        if a_line.strip() == e_line.strip():
            continue
        a_tok, e_tok = a_line.split(), e_line.split()
        if len(a_tok) != len(e_tok):
            return False
        for a, e in zip(a_tok, e_tok):
            if a == e:
                continue
            try:
                fa, fe = float(a), float(e)
            except ValueError:
                return False
            if not (math.isfinite(fa) and math.isfinite(fe)) or abs(fa - fe) > float_tol:
                return False
    return True


@dataclass
class Verdict:
    """What the executor found out about one program.

    ``tier`` is the reward tier: 1 does not compile, 2 fails (error, timeout, memory, wrong output),
    3 passes every test, 4 passes and is faster than the baseline by the margin, significantly.
    ``runtime`` and ``baseline_runtime`` are CPU seconds summed over the tests (median over trials).
    ``p_value`` is the paired test's; it is ``None`` when no test ran, and for a decisive win (R4 with
    two candidate trials, see ``ExecutionConfig.decisive_speedup``), which needs none.
    """

    compiled: bool
    passed: bool
    status: str
    error: str | None = None
    n_tests: int = 0
    n_passed: int = 0
    runtime: float | None = None
    trials: list[float] = field(default_factory=list)
    baseline_runtime: float | None = None
    baseline_trials: list[float] = field(default_factory=list)
    baseline_status: str | None = None
    speedup: float | None = None
    p_value: float | None = None
    faster: bool = False
    isolation: str | None = None

    @property
    def tier(self) -> int:
        if not self.compiled:
            return 1
        if not self.passed:
            return 2
        return 4 if self.faster else 3

    @property
    def tier_name(self) -> str:
        return TIER_NAMES[self.tier]

    def to_dict(self) -> dict:
        return {**asdict(self), "tier": self.tier_name}


@dataclass(frozen=True)
class _Timing:
    passed: bool
    status: str
    error: str | None
    trials: list[float]


@dataclass(frozen=True)
class _Check:
    """The correctness run of one (program, tests); ``cpu`` is its net CPU over the tests when it passed."""

    compiled: bool
    passed: bool
    status: str
    error: str | None
    n_passed: int
    cpu: float | None = None


def validate_tests(tests: object, where: str = "tests") -> list[dict]:
    """Check the ``[{"input": str, "output": str}, ...]`` shape, naming the offending entry."""
    if not isinstance(tests, (list, tuple)):
        raise ValueError(f"{where} must be a list of {{'input', 'output'}} dicts, got {type(tests).__name__}")
    if not tests:
        raise ValueError(f"{where} is empty: a program cannot be judged without at least one test")
    for i, test in enumerate(tests):
        if not isinstance(test, dict) or "input" not in test or "output" not in test:
            raise ValueError(f"{where}[{i}] must be a dict with 'input' and 'output', got {test!r:.80}")
        for key in ("input", "output"):
            if not isinstance(test[key], str):
                raise ValueError(f"{where}[{i}][{key!r}] must be a str, got {type(test[key]).__name__}")
    return list(tests)


def _classify(run: dict) -> tuple[str, str]:
    if run["timeout"]:
        return "timeout", "wall-clock timeout"
    if run["output_limit"]:
        return "output_limit", "output over the limit"
    code = run["exit"]
    tail = run.get("stderr", "").strip().splitlines()
    last = tail[-1][:300] if tail else ""
    if code == -24:  # SIGXCPU
        return "timeout", "CPU time limit"
    if "MemoryError" in last or code == -9:
        return "memory_limit", last or "killed (memory)"
    return "runtime_error", last or f"exit status {code}"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class Executor:
    """Judges programs against unit tests in a pool of sandboxed workers.

    Args:
        config: Limits, timing and comparison settings; defaults to :class:`ExecutionConfig`.

    Example:
        ```python
        >>> from perfrl_trl.execution import Executor
        >>> tests = [{"input": "3\\n", "output": "6\\n"}]
        >>> with Executor() as ex:
        ...     ex.judge("print(sum(range(int(input()) + 1)))", tests, time_it=False).tier_name
        'R3'
        ```
    """

    def __init__(self, config: ExecutionConfig | None = None):
        self.config = config or ExecutionConfig()
        self.isolation = resolve_isolation(self.config.isolation)
        logger.info("perfrl_trl sandbox isolation level: %s", self.isolation)
        self._pool = WorkerPool(self.config, self.isolation)
        self._threads = ThreadPoolExecutor(self.config.num_workers, thread_name_prefix="perfrl-judge")
        self._lock = threading.Lock()
        self._verdicts: OrderedDict[str, Verdict] = OrderedDict()
        self._pending: dict[str, Future] = {}  # verdicts being computed, for identical requests meanwhile
        self._checks: OrderedDict[str, _Check] = OrderedDict()
        self._baselines: OrderedDict[str, Future] = OrderedDict()
        # requests: judge calls; cache_hits: of those, answered by an earlier or in-flight identical
        # request; runs: verdicts computed; check_hits: correctness runs reused for the same (program,
        # tests); baselines_timed: baselines checked and timed; timed_runs: timed executions of a program
        # over all its tests (candidates and baselines).
        self.stats = {
            "requests": 0,
            "cache_hits": 0,
            "runs": 0,
            "check_hits": 0,
            "baselines_timed": 0,
            "timed_runs": 0,
            "sandbox_errors": 0,
        }

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)
        self._pool.close()

    # -- one request on one worker ----------------------------------------------------------------
    def _run(self, code: str, inputs: list[str], repeats: int) -> dict:
        worker = self._pool.acquire()
        try:
            return worker.run(code, inputs, repeats=repeats)
        finally:
            self._pool.release(worker)

    def _check(self, code: str, tests: list[dict]) -> _Check:
        """The untimed correctness run, shared by every request for the same (program, tests)."""
        key = _digest("check", code, tests, self.config.key())
        with self._lock:
            cached = self._checks.get(key)
            if cached is not None:
                self._checks.move_to_end(key)
                self.stats["check_hits"] += 1
                return cached
        check = self._check_uncached(code, tests)
        with self._lock:
            self._checks[key] = check
            while len(self._checks) > self.config.cache_size:
                self._checks.popitem(last=False)
        return check

    def _check_uncached(self, code: str, tests: list[dict]) -> _Check:
        reply = self._run(code, [t["input"] for t in tests], repeats=1)
        if not reply["compiled"]:
            return _Check(False, False, "compile_error", reply.get("error"), 0)
        n_ok = 0
        for run, test in zip(reply["runs"], tests):
            if run["exit"] != 0 or run["timeout"] or run["output_limit"]:
                return _Check(True, False, *_classify(run), n_ok)
            if not compare_outputs(run["stdout"], test["output"], self.config.float_tol):
                return _Check(True, False, "wrong_answer", f"wrong output on test {n_ok}", n_ok)
            n_ok += 1
        return _Check(True, True, "passed", None, n_ok, sum(r["cpu_net"] for r in reply["runs"]))

    def _time(self, code: str, tests: list[dict], repeats: int | None = None) -> list[float]:
        repeats = self.config.n_trials if repeats is None else repeats
        inputs = [t["input"] for t in tests]
        reply = self._run(code, inputs, repeats=repeats)
        runs = reply["runs"]
        if len(runs) != len(inputs) * repeats or any(
            r["exit"] != 0 or r["timeout"] or r["output_limit"] for r in runs
        ):
            raise SandboxError("a timed run failed after the correctness run had passed")
        with self._lock:
            self.stats["timed_runs"] += repeats
        per_test = len(inputs)
        return [sum(r["cpu_net"] for r in runs[i : i + per_test]) for i in range(0, len(runs), per_test)]

    def _time_paired(self, code: str, baseline: str, tests: list[dict]) -> tuple[list[float], list[float]]:
        """Alternate candidate and baseline trials on one worker, so drift hits both alike."""
        inputs = [t["input"] for t in tests]
        cand, base = [], []
        worker = self._pool.acquire()
        try:
            for _ in range(self.config.n_trials):
                for program, out in ((code, cand), (baseline, base)):
                    runs = worker.run(program, inputs, repeats=1)["runs"]
                    if len(runs) != len(inputs) or any(
                        r["exit"] != 0 or r["timeout"] or r["output_limit"] for r in runs
                    ):
                        raise SandboxError("a timed run failed after the correctness run had passed")
                    out.append(sum(r["cpu_net"] for r in runs))
        finally:
            self._pool.release(worker)
            with self._lock:
                self.stats["timed_runs"] += len(cand) + len(base)
        return cand, base

    def _time_paired_sequential(
        self, code: str, baseline: str, tests: list[dict]
    ) -> tuple[list[float], list[float], SpeedupDecision]:
        """:func:`confirm_paired` with its early look, every run on one worker."""
        cfg = self.config
        inputs = [t["input"] for t in tests]
        worker = self._pool.acquire()
        n_runs = 0

        def run(program: str) -> float:
            nonlocal n_runs
            runs = worker.run(program, inputs, repeats=1)["runs"]
            if len(runs) != len(inputs) or any(
                r["exit"] != 0 or r["timeout"] or r["output_limit"] for r in runs
            ):
                raise SandboxError("a timed run failed after the correctness run had passed")
            n_runs += 1
            return sum(r["cpu_net"] for r in runs)

        try:
            return confirm_paired(
                lambda: run(code),
                lambda: run(baseline),
                cfg.n_trials,
                cfg.margin,
                cfg.alpha,
                cfg.min_time_diff_s,
                sequential=True,
            )
        finally:
            self._pool.release(worker)
            with self._lock:
                self.stats["timed_runs"] += n_runs

    def _baseline(self, baseline: str, tests: list[dict]) -> _Timing:
        """Time the baseline once per (program, tests) and share the measurement (thread-safe)."""
        key = _digest("baseline", baseline, tests, self.config.key())
        with self._lock:
            fut = self._baselines.get(key)
            owner = fut is None
            if owner:
                fut = self._baselines[key] = Future()
                self._evict_baselines()
            else:
                self._baselines.move_to_end(key)
        if not owner:
            return fut.result()
        try:
            check = self._check(baseline, tests)
            trials = []
            if check.passed and self.config.sequential_timing:
                # The cached baseline only screens candidates (the paired confirmation re-times it for an
                # apparent win), so three values do: its correctness run and two timed runs. A warm-up
                # in the first value makes the baseline look slower, which can cost a confirmation,
                # never grant a false "faster".
                trials = [check.cpu, *self._time(baseline, tests, repeats=min(2, self.config.n_trials))]
            elif check.passed:
                trials = self._time(baseline, tests)
            timing = _Timing(check.passed, check.status, check.error, trials)
            with self._lock:
                self.stats["baselines_timed"] += 1
        except SandboxError as exc:
            timing = _Timing(False, "sandbox_error", str(exc), [])
            with self._lock:
                self._baselines.pop(key, None)  # a crash is not a property of the baseline: retry next time
        except BaseException as exc:
            # Whatever else goes wrong, the threads waiting on this baseline must not wait forever.
            with self._lock:
                self._baselines.pop(key, None)
            fut.set_exception(exc)
            raise
        fut.set_result(timing)
        return timing

    def _evict_baselines(self) -> None:
        """Keep at most `cache_size` baselines, dropping the least recently used finished ones (lock held)."""
        excess = len(self._baselines) - self.config.cache_size
        stale = []
        for key, fut in self._baselines.items():
            if len(stale) >= excess:
                break
            if fut.done():  # a baseline still being timed has waiters: it stays
                stale.append(key)
        for key in stale:
            del self._baselines[key]

    # -- public API -----------------------------------------------------------------------------------
    def judge(
        self, program: str, tests: Sequence[dict], baseline: str | None = None, time_it: bool = True
    ) -> Verdict:
        """Run ``program`` on ``tests`` and, if it passes and a baseline is given, time both.

        Args:
            program: Python source that reads stdin and writes stdout.
            tests: ``[{"input": str, "output": str}, ...]``, at least one.
            baseline: The slow program to compare against (timed once and cached).
            time_it: Whether to time a passing program (needed for a speed-up and for R4).

        Returns:
            A :class:`Verdict`. A program that crashes the sandbox gets ``status="sandbox_error"`` (R2);
            this method never raises for anything the program does.
        """
        tests = validate_tests(tests)
        if not isinstance(program, str):
            raise ValueError(f"program must be a str, got {type(program).__name__}")
        key = _digest(program, tests, baseline, time_it, self.config.key())
        with self._lock:
            self.stats["requests"] += 1
            cached = self._verdicts.get(key)
            if cached is not None:
                self._verdicts.move_to_end(key)
                self.stats["cache_hits"] += 1
                return cached
            # An identical request already being judged (greedy and sampled candidates often coincide,
            # and are submitted together): wait for its verdict rather than judge it twice.
            pending = self._pending.get(key)
            if pending is not None:
                self.stats["cache_hits"] += 1
            else:
                self._pending[key] = Future()
        if pending is not None:
            return pending.result()
        fut = self._pending[key]
        try:
            verdict = self._judge_uncached(program, tests, baseline, time_it)
        except BaseException as exc:
            with self._lock:
                self._pending.pop(key, None)
            fut.set_exception(exc)
            raise
        with self._lock:
            self.stats["runs"] += 1
            self._pending.pop(key, None)
            if verdict.status != "sandbox_error":
                self._verdicts[key] = verdict
                while len(self._verdicts) > self.config.cache_size:
                    self._verdicts.popitem(last=False)
        fut.set_result(verdict)
        return verdict

    def _judge_uncached(
        self, program: str, tests: list[dict], baseline: str | None, time_it: bool
    ) -> Verdict:
        try:
            check = self._check(program, tests)
        except SandboxError as exc:
            with self._lock:
                self.stats["sandbox_errors"] += 1
            logger.warning("candidate crashed the sandbox (scored as a failure): %s", exc)
            return Verdict(True, False, "sandbox_error", str(exc), len(tests), 0, isolation=self.isolation)
        verdict = Verdict(
            check.compiled, check.passed, check.status, check.error, len(tests), check.n_passed,
            isolation=self.isolation,
        )  # fmt: skip
        if not (check.passed and time_it):
            return verdict
        if baseline is not None and program == baseline:
            # The baseline itself, word for word (a policy that returns its input): it cannot be faster
            # than itself, and its timing is the baseline's, so nothing needs to run again.
            base = self._baseline(baseline, tests)
            verdict.baseline_status = base.status
            if base.passed:
                verdict.trials, verdict.baseline_trials = list(base.trials), list(base.trials)
                verdict.runtime = verdict.baseline_runtime = median(base.trials)
                verdict.speedup = 1.0
            return verdict
        if self.config.sequential_timing:
            return self._time_sequential(verdict, program, tests, baseline, check)
        return self._time_fixed(verdict, program, tests, baseline)

    def _time_fixed(self, verdict: Verdict, program: str, tests: list[dict], baseline: str | None) -> Verdict:
        """The fixed rule: ``n_trials`` timed runs; an apparent win is re-measured paired, ``n_trials`` each."""
        try:
            verdict.trials = self._time(program, tests)
        except SandboxError as exc:
            # It passed once but failed while being timed (flaky or hostile): a pass, never "faster".
            verdict.error = f"timing failed: {exc}"
            return verdict
        verdict.runtime = median(verdict.trials)
        if baseline is None:
            return verdict
        base = self._baseline(baseline, tests)
        verdict.baseline_status = base.status
        if not base.passed:
            return verdict
        verdict.baseline_trials = base.trials
        verdict.baseline_runtime = median(base.trials)
        cfg = self.config
        decision = decide_faster(verdict.trials, base.trials, cfg.margin, cfg.alpha, cfg.min_time_diff_s)
        if decision.faster:
            # The cached baseline was timed earlier, under whatever load the machine had then; an
            # apparent win is only confirmed on trials of both programs interleaved on one worker.
            try:
                cand_trials, base_trials = self._time_paired(program, baseline, tests)
            except SandboxError as exc:
                verdict.error = f"timing failed: {exc}"
                return verdict
            decision = decide_faster(cand_trials, base_trials, cfg.margin, cfg.alpha, cfg.min_time_diff_s)
            verdict.trials, verdict.baseline_trials = cand_trials, base_trials
            verdict.runtime = median(cand_trials)
            verdict.baseline_runtime = median(base_trials)
        verdict.speedup, verdict.faster, verdict.p_value = decision.speedup, decision.faster, decision.p_value
        return verdict

    def _time_sequential(
        self, verdict: Verdict, program: str, tests: list[dict], baseline: str | None, check: _Check
    ) -> Verdict:
        """The sequential rule: trials only while the verdict is open (see ``sequential_timing``).

        The correctness run's CPU time is the candidate's first trial: any warm-up it carries makes the
        candidate look slower, never faster.
        """
        cfg = self.config
        trials = [check.cpu]
        try:
            if baseline is None:
                # No verdict to decide: the runtime is for reporting, from the same number of values.
                trials += self._time(program, tests, repeats=cfg.n_trials - 1)
                verdict.trials, verdict.runtime = trials, median(trials)
                return verdict
            base = self._baseline(baseline, tests)
            verdict.baseline_status = base.status
            if not base.passed:
                verdict.trials, verdict.runtime = trials, median(trials)
                return verdict
            decision: SpeedupDecision | None = None
            if clearly_slower(trials, base.trials):
                # Its correctness run alone took twice the baseline's slowest trial: another run of a slow
                # program cannot make it faster (and one value is never significant: "not faster").
                decision = decide_faster(trials, base.trials, cfg.margin, cfg.alpha, cfg.min_time_diff_s)
            else:
                # The screen against the cached baseline: a clear miss stops here, a decisive win too.
                # Anything else (a clear win, or load drift between the cached baseline and now) goes to
                # the paired runs, whose first probe (C B C) settles a drift-made "maybe" for three runs.
                trials += self._time(program, tests, repeats=1)
                if decisive_win(trials, base.trials, cfg.decisive_speedup):
                    # Far beyond what load does to CPU time: paired runs of a slow baseline would only agree.
                    decision = SpeedupDecision(median(base.trials) / median(trials), True, None)
                elif screen(trials, base.trials, cfg.margin, cfg.min_time_diff_s) == NOT_FASTER:
                    # Its best trial already misses, so the medians do too: never "faster" here.
                    decision = decide_faster(trials, base.trials, cfg.margin, cfg.alpha, cfg.min_time_diff_s)
            verdict.trials, verdict.runtime = trials, median(trials)
            verdict.baseline_trials, verdict.baseline_runtime = base.trials, median(base.trials)
            if decision is None:
                cand_trials, base_trials, decision = self._time_paired_sequential(program, baseline, tests)
                verdict.trials, verdict.baseline_trials = cand_trials, base_trials
                verdict.runtime, verdict.baseline_runtime = median(cand_trials), median(base_trials)
        except SandboxError as exc:
            # It passed once but failed while being timed (flaky or hostile): a pass, never "faster".
            verdict.error = f"timing failed: {exc}"
            verdict.trials = trials
            verdict.runtime = median(trials)
            return verdict
        verdict.speedup, verdict.faster, verdict.p_value = decision.speedup, decision.faster, decision.p_value
        return verdict

    def submit(
        self, program: str, tests: Sequence[dict], baseline: str | None = None, time_it: bool = True
    ) -> Future:
        """Like :meth:`judge`, but returns at once with a ``Future`` (lets scoring overlap generation)."""
        tests = validate_tests(tests)
        return self._threads.submit(self.judge, program, tests, baseline, time_it)

    def judge_many(
        self,
        jobs: Iterable[tuple[str, Sequence[dict], str | None]],
        time_it: bool = True,
        progress: bool | str = False,
    ) -> list[Verdict]:
        """Judge many ``(program, tests, baseline)`` triples in parallel; results keep the input order.

        Args:
            jobs: Triples of program, tests and baseline (``None`` for no timing comparison).
            time_it: Whether to time passing programs.
            progress: Show a tqdm bar (a string is used as its description).
        """
        jobs = list(jobs)
        for i, job in enumerate(jobs):
            validate_tests(job[1], where=f"jobs[{i}].tests")
        futures = [self._threads.submit(self.judge, p, t, b, time_it) for p, t, b in jobs]
        if progress:
            from tqdm.auto import tqdm

            desc = progress if isinstance(progress, str) else "judging"
            with tqdm(total=len(futures), desc=desc) as bar:
                for fut in futures:
                    fut.add_done_callback(lambda _: bar.update(1))
                return [f.result() for f in futures]
        return [f.result() for f in futures]


_shared: dict[str, Executor] = {}
_shared_lock = threading.Lock()


def get_executor(config: ExecutionConfig | None = None) -> Executor:
    """A process-wide executor for ``config``, started on first use and closed at exit.

    Executors are shared per configuration: rewards and metrics with the same settings share workers
    and verdict caches, and one with other settings never closes an executor that others hold.

    Args:
        config: The settings; defaults to :class:`ExecutionConfig`.
    """
    config = config or ExecutionConfig()
    key = repr(config)  # every field, including the (unhashable) environment dict
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Executor(config)
        return _shared[key]


@atexit.register
def _close_shared() -> None:
    for executor in _shared.values():
        executor.close()
