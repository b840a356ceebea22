"""Isolation levels and the host's handle on one sandboxed worker.

Levels, strongest first:

``bwrap``
    bubblewrap with every namespace unshared (user, PID, network, IPC, UTS, mount, cgroup), run as
    uid 65534 with no capabilities. The only files visible are the interpreter's prefix and the
    system libraries, read-only; ``/tmp`` is a private tmpfs capped at ``disk_mb``. No network
    interface but a down loopback. After every run, ``kill(-1)`` inside the PID namespace removes
    whatever the program spawned. ``--die-with-parent`` takes the sandbox down with the caller.
``rlimits``
    Fallback when bubblewrap is missing: a separate session, the same rlimits and seccomp filter, a
    scrubbed environment and a fresh temporary directory. It refuses to run programs as root: a root
    caller needs runs to drop to uid 65534, else the level is unavailable. Leftover processes are hunted
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

from .config import ExecutionConfig

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_WORKER_SOURCE = (Path(__file__).with_name("_worker.py")).read_text()
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


def bwrap_command(config: ExecutionConfig) -> list[str]:
    cmd = [
        shutil.which("bwrap") or "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--uid", str(_NOBODY),
        "--gid", str(_NOBODY),
        "--ro-bind", "/usr", "/usr",
    ]  # fmt: skip
    for name in ("lib", "lib64", "bin", "sbin"):
        target = f"/{name}"
        if os.path.islink(target):
            cmd += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            cmd += ["--ro-bind", target, target]
    for root in _python_roots():
        cmd += ["--ro-bind", root, root]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    # Every writable place is a size-capped tmpfs that the worker wipes after each run, so a program can
    # neither fill the host's memory nor leave state behind for the next trial; the rest is read-only.
    cmd += ["--size", str(int(config.disk_mb) << 20), "--tmpfs", "/tmp"]
    cmd += ["--size", str(8 << 20), "--tmpfs", "/dev/shm"]
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp", "--clearenv"]
    for key, value in {**_BASE_ENV, **config.extra_env}.items():
        cmd += ["--setenv", key, value]
    cmd += ["--", sys.executable, "-I", "-c", _WORKER_SOURCE, "/tmp", "ns"]
    return cmd


@lru_cache(maxsize=1)
def bwrap_available() -> bool:
    """Whether bubblewrap is installed *and* can create the namespaces here (containers may forbid it)."""
    if shutil.which("bwrap") is None:
        return False
    cmd = bwrap_command(ExecutionConfig())
    probe = cmd[: cmd.index("--")] + ["--", sys.executable, "-I", "-S", "-c", "print(6*7)"]
    try:
        out = subprocess.run(probe, capture_output=True, timeout=20, text=True, env=_BASE_ENV)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == "42"


def resolve_isolation(requested: str = "auto") -> str:
    """The isolation level to use: the strongest available for ``"auto"``, else exactly the one asked.

    Raises:
        RuntimeError: if ``"bwrap"`` is asked for but bubblewrap cannot run here.
    """
    if requested in ("auto", "bwrap") and bwrap_available():
        return "bwrap"
    if requested == "bwrap":
        raise RuntimeError(
            "isolation='bwrap' was requested but bubblewrap is not installed or cannot create namespaces "
            "here; install it (apt-get install bubblewrap) or use isolation='auto'"
        )
    if not rlimits_available():
        raise RuntimeError(
            "no safe sandbox here: bubblewrap is unavailable, and the rlimits level refuses to run "
            "untrusted programs as root (this interpreter's files are not readable by uid 65534, so runs "
            "cannot drop to it). Install bubblewrap (apt-get install bubblewrap), or run as a normal user."
        )
    logger.warning(
        "bubblewrap is unavailable: falling back to the weaker 'rlimits' isolation level, which does not "
        "hide the filesystem or cut the network (see docs/sandbox.md)"
    )
    return "rlimits"


def rlimits_available() -> bool:
    """The rlimits level never runs a program as root: it needs a non-root caller, or uid 65534 to work."""
    return os.geteuid() != 0 or drop_uid_for_rlimits() is not None


def _world_traversable(path: str) -> bool:
    """Whether another uid could reach ``path`` (every ancestor has the o+x bit)."""
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def drop_uid_for_rlimits() -> int | None:
    """The uid that runs drop to at the rlimits level: ``nobody`` when we are root and it can still
    load the interpreter's files; otherwise ``None`` (runs keep the caller's uid, see the docs)."""
    if os.geteuid() != 0:
        return None
    roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    return _NOBODY if all(_world_traversable(p) for p in roots) else None


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
            cmd = [sys.executable, "-I", "-c", _WORKER_SOURCE, self._tmp, "plain"]
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

    def run(self, code: str, inputs: list[str], repeats: int = 1, stop_on_error: bool = True) -> dict:
        """Run ``code`` on each input, ``repeats`` times over; returns the worker's reply with outputs.

        Raises:
            SandboxError: if the worker died or hung; it is restarted on the next call.
        """
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
            "timeout": cfg.timeout_s,
            "output_cap": cfg.output_limit_bytes,
            "rlimits": cfg.rlimits(),
            "drop_uid": drop_uid_for_rlimits() if self.isolation == "rlimits" else None,
        }
        header = json.dumps(req).encode()
        # Every run may take its full timeout, plus fork/cleanup slack; past that the worker is hung.
        deadline = time.monotonic() + 10 + repeats * len(inputs) * (cfg.timeout_s + 2)
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
