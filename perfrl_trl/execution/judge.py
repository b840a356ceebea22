"""Program + tests (+ baseline) -> a verdict, in parallel over sandboxed workers, with caches."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from statistics import median

from .config import ExecutionConfig
from .counters import decide_by_count, find_instruction_counter
from .memo import OnceCache
from .sandbox import SandboxError, WorkerPool, resolve_isolation
from .tiers import Tier
from .timing import TimingOutcome, fixed_rule, sequential_rule

logger = logging.getLogger(__name__)


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
    ``runtime`` and ``baseline_runtime`` are the cost summed over the tests, in the unit of ``cost``: with
    ``"cpu_time"`` CPU seconds (median over trials), with ``"instructions"`` instructions (one count, the
    only value of ``trials``), counted by ``counter``. ``p_value`` is the paired test's; it is ``None`` when
    no test ran, for a decisive win (R4 with two candidate trials, see ``ExecutionConfig.decisive_speedup``),
    which needs none, and for counts, which are exact.
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
    cost: str = "cpu_time"
    counter: str | None = None

    @property
    def tier(self) -> Tier:
        if not self.compiled:
            return Tier.R1
        if not self.passed:
            return Tier.R2
        return Tier.R4 if self.faster else Tier.R3

    @property
    def tier_name(self) -> str:
        return self.tier.name

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


def _cpu_per_run(reply: dict, n_tests: int, repeats: int) -> list[float]:
    """Net CPU seconds of each of ``repeats`` timed runs over ``n_tests`` tests; any failed run raises.

    A timed run can only fail after its correctness run passed if the program is flaky or hostile.
    """
    runs = reply["runs"]
    if len(runs) != n_tests * repeats or any(
        r["exit"] != 0 or r["timeout"] or r["output_limit"] for r in runs
    ):
        raise SandboxError("a timed run failed after the correctness run had passed")
    return [sum(r["cpu_net"] for r in runs[i : i + n_tests]) for i in range(0, len(runs), n_tests)]


def _instructions_of(reply: dict, tests: list[dict], float_tol: float) -> int:
    """The program's instructions over all tests of one counted run; a failed or miscounted run raises.

    The counted run must also print the expected outputs: a program that behaved differently under valgrind
    (it can tell) would otherwise be counted for work it did not do.
    """
    runs = reply.get("runs", [])
    if not reply.get("compiled") or len(runs) != len(tests):
        raise SandboxError(f"a counted run stopped after {len(runs)} of {len(tests)} tests")
    for i, (run, test) in enumerate(zip(runs, tests)):
        if run["exit"] != 0 or run["timeout"] or run["output_limit"]:
            raise SandboxError(f"the counted run of test {i} failed: {_classify(run)[1]}")
        if run.get("instructions_net") is None:
            raise SandboxError(f"no count for test {i}: {run.get('count_error')}")
        if not compare_outputs(run["stdout"], test["output"], float_tol):
            raise SandboxError(f"the counted run of test {i} printed a wrong output")
    return sum(int(run["instructions_net"]) for run in runs)


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
        # Fails here, with how to install one, rather than at the first passing program.
        counter = (
            find_instruction_counter(self.config.valgrind) if self.config.cost == "instructions" else None
        )
        self.counter = counter.name if counter is not None else None
        logger.info("perfrl_trl sandbox isolation level: %s", self.isolation)
        self._pool = WorkerPool(self.config, self.isolation)
        self._threads = ThreadPoolExecutor(self.config.num_workers, thread_name_prefix="perfrl-judge")
        self._lock = threading.Lock()  # guards stats
        # Identical requests are judged once (greedy and sampled candidates often coincide, and are
        # submitted together), a (program, tests) is run for correctness once, and a baseline is timed once.
        self._verdicts: OnceCache[Verdict] = OnceCache(self.config.cache_size)
        self._checks: OnceCache[_Check] = OnceCache(self.config.cache_size)
        self._baselines: OnceCache[_Timing] = OnceCache(self.config.cache_size)
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

    def _count(self, stat: str, n: int = 1) -> None:
        with self._lock:
            self.stats[stat] += n

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
        self._count("requests")
        verdict, hit = self._verdicts.get(
            _digest(program, tests, baseline, time_it, self.config.key()),
            lambda: self._judge_uncached(program, tests, baseline, time_it),
            keep=lambda v: v.status != "sandbox_error",  # a crash is not a property of the program
        )
        self._count("cache_hits" if hit else "runs")
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

    def count_instructions(self, program: str, tests: Sequence[dict]) -> int:
        """Count the instructions ``program`` executes over ``tests``, once, in the sandbox (not cached).

        Needs ``ExecutionConfig(cost="instructions")``. Start-up is left out: the count is the program's own
        work, the same in every run and on every machine with the same interpreter and valgrind.

        Args:
            program: Python source that reads stdin and writes stdout.
            tests: ``[{"input": str, "output": str}, ...]``; the program must print each output.

        Raises:
            ValueError: if this executor does not count instructions.
            SandboxError: if a run fails, prints a wrong output, or cannot be counted.

        Example:
            ```python
            >>> ex = Executor(ExecutionConfig(cost="instructions"))  # doctest: +SKIP
            >>> ex.count_instructions("print(input())", [{"input": "1\\n", "output": "1\\n"}])  # doctest: +SKIP
            36268
            ```
        """
        if self.config.cost != "instructions":
            raise ValueError(
                f"count_instructions needs ExecutionConfig(cost='instructions'), not {self.config.cost!r}"
            )
        return self._count_instructions(program, validate_tests(tests))

    # -- one verdict, top to bottom ------------------------------------------------------------------
    def _judge_uncached(
        self, program: str, tests: list[dict], baseline: str | None, time_it: bool
    ) -> Verdict:
        verdict = self._judge_program(program, tests, baseline, time_it)
        verdict.cost, verdict.counter = self.config.cost, self.counter
        return verdict

    def _judge_program(self, program: str, tests: list[dict], baseline: str | None, time_it: bool) -> Verdict:
        try:
            check = self._check(program, tests)
        except SandboxError as exc:
            self._count("sandbox_errors")
            logger.warning("candidate crashed the sandbox (scored as a failure): %s", exc)
            return Verdict(True, False, "sandbox_error", str(exc), len(tests), 0, isolation=self.isolation)
        verdict = Verdict(
            check.compiled, check.passed, check.status, check.error, len(tests), check.n_passed,
            isolation=self.isolation,
        )  # fmt: skip
        if not (check.passed and time_it):
            return verdict
        base = self._baseline(baseline, tests) if baseline is not None else None
        if base is not None:
            verdict.baseline_status = base.status
        if base is not None and base.passed and program == baseline:
            # The baseline itself, word for word (a policy that returns its input): it cannot be faster
            # than itself, and its timing is the baseline's, so nothing needs to run again.
            verdict.trials, verdict.baseline_trials = list(base.trials), list(base.trials)
            verdict.runtime = verdict.baseline_runtime = median(base.trials)
            verdict.speedup = 1.0
            return verdict
        if program == baseline:
            return verdict
        if self.config.cost == "instructions":
            return self._judge_count(verdict, program, tests, base)
        # Sequential: the correctness run's CPU time is the candidate's first trial (any warm-up it carries
        # makes the candidate look slower, never faster). Fixed: ``n_trials`` timed runs.
        trials = [check.cpu] if self.config.sequential_timing else []
        try:
            if base is None or not base.passed:
                # No verdict to decide: the runtime is for reporting, from the rule's number of values.
                trials += self._time(program, tests, repeats=self.config.n_trials - len(trials))
                verdict.trials, verdict.runtime = trials, median(trials)
                return verdict
            outcome = self._decide(program, baseline, tests, trials, base.trials)
        except SandboxError as exc:
            # It passed once but failed while being timed (flaky or hostile): a pass, never "faster".
            verdict.error = f"timing failed: {exc}"
            if trials:
                verdict.trials, verdict.runtime = trials, median(trials)
            if base is not None and base.passed:
                verdict.baseline_trials, verdict.baseline_runtime = base.trials, median(base.trials)
            return verdict
        verdict.trials, verdict.runtime = outcome.trials, median(outcome.trials)
        verdict.baseline_trials, verdict.baseline_runtime = (
            outcome.baseline_trials,
            median(outcome.baseline_trials),
        )
        decision = outcome.decision
        verdict.speedup, verdict.faster, verdict.p_value = decision.speedup, decision.faster, decision.p_value
        return verdict

    def _judge_count(
        self, verdict: Verdict, program: str, tests: list[dict], base: _Timing | None
    ) -> Verdict:
        """Instructions mode: one counted run of the passing program, against the baseline's (cached) count."""
        if base is not None and base.passed:
            verdict.baseline_trials, verdict.baseline_runtime = list(base.trials), base.trials[0]
        try:
            count = self._count_instructions(program, tests)
        except SandboxError as exc:
            # It passed, but could not be counted (too slow under valgrind, or behaving differently there).
            verdict.error = f"counting failed: {exc}"
            return verdict
        verdict.trials, verdict.runtime = [count], count
        if base is not None and base.passed:
            decision = decide_by_count(int(count), int(base.trials[0]), self.config.margin)
            verdict.speedup, verdict.faster = decision.speedup, decision.faster
        return verdict

    def _count_instructions(self, code: str, tests: list[dict]) -> int:
        """Instructions of one counted run of ``code`` over all tests, on any worker."""
        worker = self._pool.acquire()
        try:
            reply = worker.run(code, [t["input"] for t in tests], repeats=1, count=True)
        finally:
            self._pool.release(worker)
        self._count("timed_runs")
        return _instructions_of(reply, tests, self.config.float_tol)

    def _decide(
        self, program: str, baseline: str, tests: list[dict], trials: list[float], base_trials: list[float]
    ) -> TimingOutcome:
        """The timing rule's decision; its paired runs alternate both programs on one worker."""
        rule = self.config.timing_rule()
        with self._one_worker(tests) as run:
            if self.config.sequential_timing:
                return sequential_rule(
                    trials,
                    base_trials,
                    lambda: self._time(program, tests, repeats=1)[0],
                    lambda: run(program),
                    lambda: run(baseline),
                    rule,
                )
            trials += self._time(program, tests)
            return fixed_rule(trials, base_trials, lambda: run(program), lambda: run(baseline), rule)

    def _check(self, code: str, tests: list[dict]) -> _Check:
        """The untimed correctness run, shared by every request for the same (program, tests)."""
        check, hit = self._checks.get(
            _digest("check", code, tests, self.config.key()), lambda: self._check_uncached(code, tests)
        )
        if hit:
            self._count("check_hits")
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

    def _baseline(self, baseline: str, tests: list[dict]) -> _Timing:
        """The baseline's check and timing, measured once per (program, tests) and shared (thread-safe)."""
        timing, _ = self._baselines.get(
            _digest("baseline", baseline, tests, self.config.key()),
            lambda: self._time_baseline(baseline, tests),
            keep=lambda t: t.status != "sandbox_error",  # a crash is not a property of the baseline: retry
        )
        return timing

    def _time_baseline(self, baseline: str, tests: list[dict]) -> _Timing:
        try:
            check = self._check(baseline, tests)
            trials = []
            if check.passed and self.config.cost == "instructions":
                try:
                    trials = [self._count_instructions(baseline, tests)]
                except SandboxError as exc:
                    # Passes, but has no count: nothing can be compared with it (and it is not retried).
                    return _Timing(False, "count_failed", f"counting failed: {exc}", [])
            elif check.passed and self.config.sequential_timing:
                # The cached baseline only screens candidates (the paired confirmation re-times it for an
                # apparent win), so three values do: its correctness run and two timed runs. A warm-up
                # in the first value makes the baseline look slower, which can cost a confirmation,
                # never grant a false "faster".
                trials = [check.cpu, *self._time(baseline, tests, repeats=min(2, self.config.n_trials))]
            elif check.passed:
                trials = self._time(baseline, tests)
        except SandboxError as exc:
            return _Timing(False, "sandbox_error", str(exc), [])
        self._count("baselines_timed")
        return _Timing(check.passed, check.status, check.error, trials)

    # -- runs on workers ------------------------------------------------------------------------------
    def _run(self, code: str, inputs: list[str], repeats: int) -> dict:
        worker = self._pool.acquire()
        try:
            return worker.run(code, inputs, repeats=repeats)
        finally:
            self._pool.release(worker)

    def _time(self, code: str, tests: list[dict], repeats: int | None = None) -> list[float]:
        """``repeats`` timed runs of ``code`` over all tests on any worker: CPU seconds per run."""
        repeats = self.config.n_trials if repeats is None else repeats
        inputs = [t["input"] for t in tests]
        values = _cpu_per_run(self._run(code, inputs, repeats=repeats), len(inputs), repeats)
        self._count("timed_runs", repeats)
        return values

    @contextmanager
    def _one_worker(self, tests: list[dict]) -> Iterator[Callable[[str], float]]:
        """A worker held for alternated runs, so drift hits both programs alike; acquired on first use."""
        inputs = [t["input"] for t in tests]
        worker = None
        n_runs = 0

        def run(program: str) -> float:
            nonlocal worker, n_runs
            if worker is None:
                worker = self._pool.acquire()
            value = _cpu_per_run(worker.run(program, inputs, repeats=1), len(inputs), 1)[0]
            n_runs += 1
            return value

        try:
            yield run
        finally:
            if worker is not None:
                self._pool.release(worker)
            self._count("timed_runs", n_runs)
