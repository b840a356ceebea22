"""Judging on a Ray cluster: every candidate judged from start to end by one actor, on one node.

``ExecutionConfig(ray_address=...)`` makes :func:`~perfrl_trl.execution.get_executor` return a
:class:`RayExecutor`, which has :class:`~perfrl_trl.execution.Executor`'s interface (``judge``, ``submit``,
``judge_many``, ``close``, ``stats``, ``isolation``, ``config``), so the reward function, the metric and the
trainer use it unchanged.

How it works:

- One actor per CPU the cluster offers (``ExecutionConfig.workers`` sets the number; see
  :func:`default_num_actors`), each reserving one CPU. An actor holds a local ``Executor`` with one sandbox
  fork server on its node, and judges a request there whole: the correctness run, the timed runs, and the
  baseline runs it is compared with. The baseline timings are cached per actor, so a baseline timed on one
  node is never compared with a candidate timed on another (nodes differ in speed).
- Requests wait on the driver, and each actor takes the next one when it is free (one request at a time, so
  none waits behind a busy actor): first one whose (baseline, tests) it has timed already, then one whose
  baseline no actor has timed, and one waiting for busy actors that timed its baseline only once it has
  waited as long as timing that baseline takes (see :meth:`RayExecutor._choose`).
- The driver keeps the verdict cache (:class:`~perfrl_trl.execution.OnceCache`): identical requests are
  judged once, even when they arrive together.
- An actor that dies (its process killed, its node lost) has its requests sent again to another actor,
  which judges them from the start (and times the baseline itself); Ray restarts the dead actor. Each request
  waits on its own call, so its verdict is its own, once. A request whose actors died ``ATTEMPTS`` times is
  a ``sandbox_error`` (R2, not cached), as a crash of a local worker is.

Ray is imported only here, and only when a ``RayExecutor`` is made: ``import perfrl_trl.execution`` never
imports it. Every node needs perfrl_trl installed in the same Python environment as the driver (the actors
import it), and its own sandbox (bubblewrap, or the rlimits fallback: :attr:`RayExecutor.isolation` is the
weakest level any actor reported).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from statistics import median

from .config import ExecutionConfig
from .judge import Executor, Verdict, _digest
from .memo import OnceCache

logger = logging.getLogger(__name__)

# Actors a request may go to before it is scored as a sandbox failure: a program that takes down every actor
# that runs it would otherwise be retried forever.
ATTEMPTS = 3
# How long a request waits for some actor to be up (starting, or restarting after a death) before raising.
READY_TIMEOUT_S = 300.0
# Weight of the newest value in the running mean of what timing a baseline takes.
_EWMA = 0.1
# Driver-side counters; the actors' own counters (baselines timed, timed runs...) are added to them.
_DRIVER_STATS = ("requests", "cache_hits", "runs")


def import_ray():
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "ExecutionConfig.ray_address is set, but Ray is not installed: pip install 'perfrl_trl[ray]'"
        ) from exc
    return ray


def connect(address: str) -> None:
    """Connect this process to the Ray cluster at ``address``, unless it is connected already.

    ``"auto"`` is Ray's: the ``RAY_ADDRESS`` environment variable if set, else the cluster that ``ray start``
    last started on this machine. An already connected process keeps its connection, whatever the address.

    Raises:
        RuntimeError: if no cluster answers there.
    """
    ray = import_ray()
    if ray.is_initialized():
        return
    try:
        # The actors' log lines stay in the cluster's log files; the driver reports what matters
        # (isolation levels, deaths) through this module's logger.
        ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
    except (ConnectionError, ValueError) as exc:
        raise RuntimeError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc


def default_num_actors() -> int:
    """The cluster's CPUs, split between the processes of a distributed run (``WORLD_SIZE``, as set by
    ``accelerate launch`` and ``torchrun``): each rank's executor starts its share, one CPU per actor.

    Raises:
        RuntimeError: if the cluster offers no CPU.
    """
    ray = import_ray()
    cpus = int(ray.cluster_resources().get("CPU", 0))
    try:
        world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        world = 1
    n = cpus // world
    if n < 1:
        raise RuntimeError(
            f"the Ray cluster offers {cpus} CPU(s) for {world} process(es): no CPU to judge on. Join CPU nodes "
            "with `ray start --address=...`, or set ExecutionConfig.workers (one CPU per actor)."
        )
    return n


def _retryable_errors() -> tuple[type[BaseException], ...]:
    """The failures of an actor or its node (not of the request): its requests go to another actor."""
    exc = import_ray().exceptions
    names = (
        "RayActorError",
        "ObjectLostError",
        "WorkerCrashedError",
        "NodeDiedError",
        "LocalRayletDiedError",
    )
    return tuple(getattr(exc, n) for n in names if hasattr(exc, n))


class JudgeActor:
    """One actor's state: a local one-worker :class:`Executor` on its node (``ray.remote`` is applied by
    :class:`RayExecutor`, so defining this class needs no Ray)."""

    def __init__(self, config: ExecutionConfig):
        self.executor = Executor(dataclasses.replace(config, ray_address=None, workers=1))

    def info(self) -> dict:
        """Where the actor runs, and its sandbox's isolation level."""
        node_id = import_ray().get_runtime_context().get_node_id()
        return {
            "pid": os.getpid(),
            "node_id": node_id,
            "host": socket.gethostname(),
            "isolation": self.executor.isolation,
        }

    def judge(
        self, program: str, tests: list[dict], baseline: str | None, time_it: bool
    ) -> tuple[Verdict, dict[str, int]]:
        """The verdict, and what judging it added to the executor's counters (one request at a time)."""
        before = dict(self.executor.stats)
        verdict = self.executor.judge(program, tests, baseline, time_it)
        return verdict, {k: v - before.get(k, 0) for k, v in self.executor.stats.items()}


@dataclasses.dataclass(eq=False)
class _Actor:
    """The driver's view of one actor slot. ``epoch`` grows each time the actor is found dead, so that one
    death is handled once and the baselines it had timed stop counting as its own."""

    index: int
    handle: object
    ready: bool = False
    dead: bool = False  # for good: could not be started again
    load: int = 0  # requests in flight
    dispatched: int = 0
    epoch: int = 0
    info: dict | None = None
    replacements: int = 0
    error: str | None = None


@dataclasses.dataclass(eq=False)
class _Ticket:
    """A request waiting for an actor: the (baseline, tests) digest it is routed by, and the actors tried."""

    key: str | None
    tried: set[int]
    since: float = dataclasses.field(default_factory=time.monotonic)
    actor: _Actor | None = None
    epoch: int = 0


class RayExecutor(Executor):
    """An :class:`Executor` whose requests are judged by Ray actors on the cluster's CPU nodes.

    It has ``Executor``'s interface and its ``submit``/``judge_many`` (run on this class's ``judge``), and is
    what :func:`~perfrl_trl.execution.get_executor` returns for a config with ``ray_address`` set. See the
    module docstring for the design.

    Args:
        config: The settings; ``ray_address`` must be set. ``workers`` is the number of actors (default
            :func:`default_num_actors`).

    Example:
        ```python
        from perfrl_trl.execution import ExecutionConfig, get_executor

        ex = get_executor(ExecutionConfig(ray_address="auto"))  # or RayExecutor(config)
        ex.judge(program, tests, baseline).tier
        ```
    """

    def __init__(self, config: ExecutionConfig):
        if config.ray_address is None:
            raise ValueError("RayExecutor needs ExecutionConfig.ray_address; use Executor to judge locally")
        self.config = config
        ray = import_ray()
        connect(config.ray_address)
        self._ray = ray
        self._retryable = _retryable_errors()
        n = config.workers if config.workers is not None else default_num_actors()
        self._remote = ray.remote(JudgeActor).options(
            num_cpus=1,
            max_restarts=-1,  # Ray restarts a dead actor (elsewhere if its node is gone) ...
            max_task_retries=0,  # ... but the driver re-sends its requests, to another actor
            scheduling_strategy="SPREAD",
        )
        self._cond = threading.Condition()
        self._closed = False
        self._lock = threading.Lock()  # guards stats
        self.stats = {
            "requests": 0,
            "cache_hits": 0,
            "runs": 0,
            "check_hits": 0,
            "baselines_timed": 0,
            "timed_runs": 0,
            "sandbox_errors": 0,
            "retries": 0,  # requests sent again after their actor died
            "actor_failures": 0,  # actors found dead
        }
        self._verdicts: OnceCache[Verdict] = OnceCache(config.cache_size)
        # (baseline, tests) -> {actor index: epoch} of the actors that timed that baseline.
        self._homes: OrderedDict[str, dict[int, int]] = OrderedDict()
        self._pending: list[_Ticket] = []  # requests waiting for a free actor, oldest first
        self._levels: set[str] = set()  # sandbox levels the actors reported
        # Seconds that timing a baseline takes (per key, and the running mean), and the dispatcher's next look.
        self._timer_due: float | None = None
        self._mean_baseline_s: float | None = None
        self._baseline_s: OrderedDict[str, float] = OrderedDict()
        self._actors = [_Actor(i, self._remote.remote(config)) for i in range(n)]
        for actor in self._actors:
            self._ping(actor)
        # Requests wait on the driver until an actor is free, so the threads are the queue the dispatcher
        # sees (each waiting one costs a thread, not a core).
        self._threads = ThreadPoolExecutor(max(32, 4 * n), thread_name_prefix="perfrl-ray-judge")
        logger.info("perfrl_trl: judging on Ray at %s with %d actors", config.ray_address, n)

    # -- actors ---------------------------------------------------------------------------------------
    def _ping(self, actor: _Actor) -> None:
        """Ask the actor where it runs; it becomes ready (again) when it answers."""
        epoch = actor.epoch
        ref = actor.handle.info.remote()
        ref.future().add_done_callback(lambda fut: self._on_ping(actor, epoch, fut))

    def _on_ping(self, actor: _Actor, epoch: int, fut) -> None:
        try:
            info = fut.result()
        except Exception as exc:
            unavailable = getattr(self._ray.exceptions, "ActorUnavailableError", ())
            if isinstance(exc, unavailable):  # unreachable for now, not dead: ask again
                threading.Thread(target=self._ping_later, args=(actor, epoch), daemon=True).start()
                return
            # Dead for good: killed without restart, its owner gone, or its constructor failed.
            with self._cond:
                if self._closed or actor.epoch != epoch:
                    return
                actor.error = f"{type(exc).__name__}: {exc}"
                if actor.replacements >= ATTEMPTS:
                    actor.dead = True
                    logger.error("Ray judge actor %d is gone: %s", actor.index, actor.error)
                    self._cond.notify_all()
                    return
                actor.replacements += 1
            logger.warning("Ray judge actor %d died (%s); starting another", actor.index, actor.error)
            # Not on Ray's callback thread: starting an actor from there is not ours to do.
            threading.Thread(target=self._replace, args=(actor, epoch), daemon=True).start()
            return
        with self._cond:
            if self._closed or actor.epoch != epoch:
                return
            actor.info, actor.ready = info, True
            self._levels.add(info["isolation"])
            levels = set(self._levels)
            self._assign()
            self._cond.notify_all()
        if info["isolation"] != "bwrap":
            logger.warning(
                "Ray judge actor %d on %s runs the weaker %r sandbox level (see docs/sandbox.md)",
                actor.index,
                info["host"],
                info["isolation"],
            )
        if len(levels) > 1:
            logger.warning("the Ray cluster's nodes have different sandbox levels: %s", sorted(levels))

    def _ping_later(self, actor: _Actor, epoch: int) -> None:
        time.sleep(1.0)
        with self._cond:
            if self._closed or actor.epoch != epoch or not self._ray.is_initialized():
                return
        try:
            self._ping(actor)
        except Exception as exc:  # Ray shut down meanwhile
            logger.debug("pinging Ray judge actor %d: %s", actor.index, exc)

    def _replace(self, actor: _Actor, epoch: int) -> None:
        time.sleep(1.0)
        try:
            with self._cond:
                if self._closed or actor.epoch != epoch or not self._ray.is_initialized():
                    return
                old = actor.handle
                actor.epoch += 1
                actor.handle = self._remote.remote(self.config)
            try:
                self._ray.kill(old, no_restart=True)
            except Exception:
                pass
            self._ping(actor)
        except Exception as exc:  # Ray shut down meanwhile (at exit): nothing to replace
            logger.debug("replacing Ray judge actor %d: %s", actor.index, exc)

    def _failed(self, actor: _Actor, epoch: int, exc: BaseException) -> None:
        """A request found ``actor`` dead: stop sending it work until it answers again (Ray restarts it)."""
        with self._cond:
            if actor.epoch != epoch or self._closed:
                return  # another request noticed first
            actor.epoch += 1
            actor.ready = False
            actor.info = None
            self.stats["actor_failures"] += 1
            self._assign()  # the baselines it had timed are nobody's now: free actors may take their requests
        logger.warning("Ray judge actor %d failed (%s); its requests go to another actor", actor.index, exc)
        self._ping(actor)

    def _pick(self, key: str | None, tried: set[int]) -> tuple[_Actor, int]:
        """Wait until an actor takes this request (see :meth:`_assign`); the actor and its epoch then.

        Raises:
            RuntimeError: if the executor is closed, every actor is gone for good, or none has been up for
                ``READY_TIMEOUT_S``.
        """
        with self._cond:
            ticket = _Ticket(key, tried)
            self._pending.append(ticket)
            self._assign()
            deadline = time.monotonic() + READY_TIMEOUT_S
            warned = False
            while ticket.actor is None:
                problem = None
                if self._closed:
                    problem = "this RayExecutor is closed"
                elif all(a.dead for a in self._actors):
                    problem = (
                        f"every Ray judge actor is gone: {sorted({a.error for a in self._actors if a.error})}"
                    )
                elif any(a.ready for a in self._actors):
                    deadline = time.monotonic() + READY_TIMEOUT_S  # queued behind others' requests: fine
                elif time.monotonic() > deadline:
                    problem = (
                        f"no Ray judge actor has been up for {READY_TIMEOUT_S:.0f} s ({len(self._actors)} asked "
                        "for, one CPU each): is the cluster short of free CPUs?"
                    )
                elif not warned and deadline - time.monotonic() < READY_TIMEOUT_S - 30:
                    logger.warning("waiting for Ray judge actors to start (the cluster may be short of CPUs)")
                    warned = True
                if problem is not None:
                    self._pending.remove(ticket)
                    raise RuntimeError(problem)
                self._cond.wait(5.0)
            return ticket.actor, ticket.epoch

    def _homes_of(self, key: str) -> set[int]:
        """The actors, up now, that timed the baseline of ``key`` in their present life (lock held)."""
        homes = self._homes.get(key)
        if not homes:
            return set()
        return {i for i, epoch in homes.items() if self._actors[i].ready and self._actors[i].epoch == epoch}

    def _steal_after(self, ticket: _Ticket) -> float:
        """When a free actor may take ``ticket`` from the busy actors that timed its baseline: once it has
        waited as long as timing that baseline takes (three runs, known from its verdicts, else the mean over
        baselines; at once before any is known). Waiting longer would idle a core to save that timing."""
        cost = self._baseline_s.get(ticket.key, self._mean_baseline_s)
        return ticket.since + (cost or 0.0)

    def _choose(self, actor: _Actor, ready: list[_Actor], now: float) -> _Ticket | None:
        """The waiting request a free ``actor`` takes, oldest first within each rule (lock held):

        1. one whose baseline it has timed;
        2. one whose baseline no actor that is up has timed (or that has none): it becomes that baseline's;
        3. one waiting for busy actors that timed its baseline, once it has waited as long as timing the
           baseline here takes (:meth:`_steal_after`): this actor then times it too;
        else none, for now. A retried request goes to an actor it has not been to yet, while one is up.
        """
        eligible = [
            t for t in self._pending if actor.index not in t.tried or all(a.index in t.tried for a in ready)
        ]
        unhomed = steal = None
        for t in eligible:
            homes = self._homes_of(t.key) if t.key is not None else set()
            if actor.index in homes:
                return t
            if not homes:
                unhomed = unhomed or t
            elif steal is None and self._steal_after(t) <= now:
                steal = t
        return unhomed or steal

    def _assign(self) -> None:
        """Hand waiting requests to the free actors, one each (lock held). Each actor judges one request at a
        time and gets the next when it is done, so no request waits behind another actor's queue."""
        ready = [a for a in self._actors if a.ready]
        free = sorted((a for a in ready if a.load == 0), key=lambda a: a.dispatched)
        now = time.monotonic()
        assigned = idle = False
        for actor in free:
            if not self._pending:
                break
            ticket = self._choose(actor, ready, now)
            if ticket is None:
                idle = True
                continue
            self._pending.remove(ticket)
            ticket.actor, ticket.epoch = actor, actor.epoch
            actor.load += 1
            actor.dispatched += 1
            if ticket.key is not None:
                homes = self._homes.get(ticket.key)
                if homes is None:
                    homes = self._homes[ticket.key] = {}
                    while len(self._homes) > self.config.cache_size:
                        self._homes.popitem(last=False)
                self._homes.move_to_end(ticket.key)
                homes[actor.index] = actor.epoch
            assigned = True
        if assigned:
            self._cond.notify_all()
        if idle and self._pending and not self._closed:
            # A free actor waits for a request to become worth taking: look again then.
            due = min(self._steal_after(t) for t in self._pending)
            if self._timer_due is None or due < self._timer_due:
                self._timer_due = due
                timer = threading.Timer(max(0.0, due - now) + 1e-3, self._on_timer)
                timer.daemon = True
                timer.start()

    def _on_timer(self) -> None:
        with self._cond:
            self._timer_due = None
            if not self._closed:
                self._assign()

    def _release(self, actor: _Actor) -> None:
        with self._cond:
            actor.load -= 1
            self._assign()

    def _learn(self, key: str | None, verdict: Verdict) -> None:
        """What timing this request's baseline costs: its cached timing is three runs (see _steal_after)."""
        if key is None or not verdict.baseline_trials:
            return
        cost = 3 * median(verdict.baseline_trials)
        with self._cond:
            self._baseline_s[key] = cost
            self._baseline_s.move_to_end(key)
            while len(self._baseline_s) > self.config.cache_size:
                self._baseline_s.popitem(last=False)
            mean = self._mean_baseline_s
            self._mean_baseline_s = cost if mean is None else (1 - _EWMA) * mean + _EWMA * cost

    def _judge_uncached(
        self, program: str, tests: list[dict], baseline: str | None, time_it: bool
    ) -> Verdict:
        key = _digest(baseline, tests) if baseline is not None and time_it else None
        tried: set[int] = set()
        last: BaseException | None = None
        for attempt in range(ATTEMPTS):
            actor, epoch = self._pick(key, tried)
            tried.add(actor.index)
            try:
                verdict, delta = self._ray.get(actor.handle.judge.remote(program, tests, baseline, time_it))
            except self._retryable as exc:
                last = exc
                self._failed(actor, epoch, exc)
                if attempt + 1 < ATTEMPTS:
                    self._count("retries")
                continue
            finally:
                self._release(actor)
            self._learn(key, verdict)
            with self._lock:
                for name, n in delta.items():
                    if name not in _DRIVER_STATS:
                        self.stats[name] = self.stats.get(name, 0) + n
            return verdict
        self._count("sandbox_errors")
        logger.warning("a request was judged by %d Ray actors that each died; scored as a failure", ATTEMPTS)
        return Verdict(
            True, False, "sandbox_error", f"the Ray actors judging it died {ATTEMPTS} times: {last}",
            len(tests), 0, isolation=self.isolation, cost=self.config.cost,
        )  # fmt: skip

    # -- Executor's interface -------------------------------------------------------------------------
    @property
    def isolation(self) -> str:
        """The weakest sandbox level any actor has reported: ``"bwrap"`` or ``"rlimits"`` (waits for the first
        actor to be up)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        with self._cond:
            while True:
                levels = set(self._levels)
                if levels or self._closed or all(a.dead for a in self._actors):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 5.0))
        if not levels:
            raise RuntimeError("no Ray judge actor is up to report its sandbox level")
        return "rlimits" if "rlimits" in levels else min(levels)

    def actors(self) -> list[dict]:
        """Each actor: index, whether it is up, requests in flight, and (when up) its pid, node and level."""
        with self._cond:
            return [
                {"index": a.index, "ready": a.ready, "dead": a.dead, "load": a.load, **(a.info or {})}
                for a in self._actors
            ]

    def wait_ready(self, n: int | None = None, timeout: float = READY_TIMEOUT_S) -> bool:
        """Wait until ``n`` actors (default all) are up; whether they are."""
        n = len(self._actors) if n is None else n
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(a.ready for a in self._actors) < n:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cond.wait(min(left, 5.0))
        return True

    def close(self) -> None:
        """Finish the requests in flight, then end the actors (their CPUs go back to the cluster)."""
        with self._cond:
            if self._closed:
                return
        self._threads.shutdown(wait=True, cancel_futures=True)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            handles = [a.handle for a in self._actors]
        if not self._ray.is_initialized():
            return  # the connection went first (at exit): the actors end with it
        for handle in handles:
            try:
                self._ray.kill(handle, no_restart=True)
            except Exception as exc:  # already gone
                logger.debug("killing a Ray judge actor: %s", exc)


def cluster_sandbox_info(address: str, probe) -> dict:
    """``probe()`` (a picklable function returning a dict) run on every alive node of the cluster.

    Returns:
        ``{"ray_address", "isolation": the weakest level of any node, "nodes": [{node_id, node_ip, **probe()}]}``.
    """
    ray = import_ray()
    connect(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(probe)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [
        remote.options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote()
        for n in nodes
    ]
    found = []
    for node, info in zip(nodes, ray.get(refs)):
        found.append({"node_id": node["NodeID"], "node_ip": node.get("NodeManagerAddress"), **info})
    levels = {n.get("isolation") for n in found}
    weakest = next((lvl for lvl in levels if str(lvl).startswith("none")), None)
    weakest = weakest or ("rlimits" if "rlimits" in levels else "bwrap")
    return {"ray_address": address, "isolation": weakest, "nodes": found}
