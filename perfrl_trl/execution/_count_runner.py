"""Counts the instructions of a program's runs, under valgrind, inside the sandbox (standard library only).

The sandbox worker starts this file once, as ``valgrind --tool=cachegrind ... python -S -s -B -c <source>
<settings>``, and keeps it for every counted run after: valgrind's start-up (1-2 s, most of it translating the
interpreter's own code) is paid once per worker instead of once per run, and code the runs share stays
translated. It is a fresh interpreter with the hash seed fixed (``PYTHONHASHSEED=0``), so every instruction
it executes is the same from one start to the next, on any machine with the same interpreter and valgrind.

Three kinds of process, all under valgrind (which follows forks):
- the server (this process) waits for a byte on its go socket, forks a session, waits for it, and does that again.
  Nothing else: no request ever reaches its memory, and what it allocates in a round (the byte, the child's
  pid, the wait's result) it frees in the reverse order before the next, so its heap is exactly the same at
  every fork, and every session starts from the same memory. (A round that left one object alive into the
  next, or freed its objects in the order it made them, made a program's count differ from one run to the
  next by tens of instructions: the allocator's free lists came out in a different order.)
- the session takes the run's descriptors from the socket (test input, stdout, stderr, the program's source,
  the run's settings), says its pid, applies the run's limits, reads and compiles the program, then forks twice
  from the same point: first an empty child (E) that exits at once, then the program's child (P). Under
  valgrind a forked child's count includes what its parents had executed before the fork, so
  ``count(P) - count(E)`` is the program's own work plus a constant (the fork and exit of a child, calibrated on
  the empty program by the host): the server's and the session's set-up and the compilation are in both and
  cancel out. It reports P's pid, E's and P's exit, and their CPU time;
- E and P install the worker's seccomp filter (no new processes, no signals to others, no ptrace, and here no
  ``execve`` either: a program that replaced itself would leave valgrind) before anything else, so the
  program runs under the same restrictions as in the CPU-time mode. P closes the socket first: only the
  session speaks on it.
"""

# The same cheap modules the worker preloads: importing them costs a program nothing in either cost mode.
import array
import bisect  # noqa: F401
import builtins
import collections  # noqa: F401
import ctypes
import functools  # noqa: F401
import gc
import heapq  # noqa: F401
import itertools  # noqa: F401
import json
import math  # noqa: F401
import operator  # noqa: F401
import os
import random
import re  # noqa: F401
import resource
import signal
import socket
import string  # noqa: F401
import struct
import sys
import traceback

# One record on the socket, from a session: a tag, four integers and a float. "s": the session took a run; its
# pid. "p": the run is over; the empty child's pid, the program's pid, the program's wait status, the children's
# maximum resident set (kB) and CPU seconds.
RECORD = struct.Struct(">cqqqqd")
SOCKET_FD = 3  # where the worker hands the server its end of the socket
GO_FD = 5  # a byte on it asks for a session; its end closed stops the server
LOG_FD = 4  # where it hands valgrind the log (``--log-fd=4``)
N_FDS = 5  # test input, stdout, stderr, source, settings


def _install_filter(blob):
    libc = ctypes.CDLL(None, use_errno=True)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(blob)
    fprog = SockFprog(len(blob) // 8, ctypes.addressof(buf))
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        os._exit(125)
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        os._exit(125)


def _program(code_obj, blob):
    """The program's child: filter, then run the program as ``__main__`` (as the worker's ``_child``)."""
    try:
        os.close(SOCKET_FD)
        if blob:
            _install_filter(blob)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        random.seed(0)  # after the fork, which reseeded it from the kernel (see ``_fix_entropy``)
        gc.enable()
        sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
        sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.argv = ["main.py"]
        main = type(sys)("__main__")
        main.__dict__["__builtins__"] = builtins
        main.__dict__["__file__"] = "main.py"
        sys.modules["__main__"] = main
    except BaseException:
        os._exit(125)
    status = 0
    try:
        exec(code_obj, main.__dict__)
    except SystemExit as exc:
        if exc.code is None:
            status = 0
        elif isinstance(exc.code, int):
            status = exc.code & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            status = 1
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
        status = 1
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            if status == 0:
                status = 1
    os._exit(status)


def _read_all(fd):
    """All of a sealed memfd the worker wrote (its offset is at the end), then closed."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _session(sock, room, blob):
    """One counted run, in the server's forked child: take it, set up as the worker's run child, then E and P."""
    try:
        msg, ancillary, _, _ = sock.recvmsg(1, room)
        fds = array.array("i")
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if not msg or len(fds) != N_FDS:
            os._exit(0)  # the worker asked for a session and then sent no run: it is going away
        sock.send(RECORD.pack(b"s", os.getpid(), 0, 0, 0, 0.0))
        stdin_fd, out_w, err_w, src_fd, settings_fd = fds
        os.setsid()  # the worker kills the run's process group on a timeout; the server is not in it
        settings = json.loads(_read_all(settings_fd))
        for name, value in settings["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (value, value))
        # Reopened read-only: the sealed input cannot be changed anyway, but this process holds no handle on
        # it that could.
        reopened = os.open(f"/proc/self/fd/{stdin_fd}", os.O_RDONLY)
        os.dup2(reopened, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        source = _read_all(src_fd)
        for fd in {reopened, stdin_fd, out_w, err_w} - {0, 1, 2}:
            os.close(fd)
        os.close(GO_FD)
        os.chdir(settings["workdir"])
        code_obj = compile(source, "main.py", "exec", dont_inherit=True)
    except BaseException:
        os._exit(125)  # the worker compiled it already: this cannot happen for a program that got here
    gc.collect()
    gc.freeze()
    empty = os.fork()
    if empty == 0:
        os.close(SOCKET_FD)
        if blob:
            _install_filter(blob)
        os._exit(0)
    os.waitpid(empty, 0)
    pid = os.fork()
    if pid == 0:
        _program(code_obj, blob)
    _, wstatus = os.waitpid(pid, 0)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    sock.send(RECORD.pack(b"p", empty, pid, wstatus, usage.ru_maxrss, usage.ru_utime + usage.ru_stime))
    os._exit(0)


# Run once by the server before it serves, so that the interpreter's common paths (loops, integer and string
# work, containers, sorting, formatting, compiling) are already translated by valgrind in every session it forks:
# a child translates afresh whatever its parent never ran, and that was about a third of a short count's cost.
# It is the same for every server, so it changes every count by the same, and counts stay exact.
REHEARSAL = """
import sys
n = 3000
s = 0
for i in range(n):
    s += i * i % 7
a = [i * 7919 % 10007 for i in range(n)]
d = {}
for x in a:
    d[x % 97] = d.get(x % 97, 0) + 1
words = " ".join(str(x) for x in sorted(a)).split()
t = sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))
m = max(len(w) for w in words), min(a), sum(a) // len(a), "%d %s" % (s, words[0]), f"{s:.3f}"
sset = set(a) & set(range(500))
"""


def _rehearse():
    """Run ``REHEARSAL`` in this process, in a namespace of its own."""
    code = compile(REHEARSAL, "rehearsal.py", "exec", dont_inherit=True)
    exec(code, {"__builtins__": builtins, "__name__": "rehearsal"})


def _fix_entropy():
    """Make the randomness a program draws from the operating system the same in every session.

    A program that shuffles its input (``random.shuffle``) or imports a library that seeds itself at import
    (numpy) draws fresh bytes from the kernel at every run, and its count moves with them (by up to thousands of
    instructions in PIE's evaluation half). As with the hash seed, a counted program gets a fixed seed instead:
    the module-level ``random`` functions, ``os.urandom`` and what reads it (``random.SystemRandom``,
    ``secrets``, numpy's default seeding) all start every session from the same state, since every session is
    forked from this one (the module-level generator is seeded in the program's child: ``random`` reseeds it
    from the kernel after every fork). Only an unseeded ``random.Random()`` made by the program still asks
    the kernel.
    """
    stream = random.Random(0)
    os.urandom = random._urandom = stream.randbytes  # random binds os.urandom at import, so both names


def _serve(settings):
    sys.path[:] = settings["path"]
    _fix_entropy()
    blob = bytes.fromhex(settings["filter"])
    sock = socket.socket(fileno=SOCKET_FD)
    # valgrind writes its log through a copy of descriptor 4 kept out of the program's reach; the original is
    # the program's to write on, so it goes.
    os.close(LOG_FD)
    # Nothing a program does may reach this process: no /proc/<pid>/fd or mem for its descendants.
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    _rehearse()
    gc.collect()
    gc.disable()  # a collection at one fork and not the next would start those sessions from different memory
    gc.freeze()
    room = socket.CMSG_LEN(N_FDS * 4)
    while True:
        if not os.read(GO_FD, 1):
            os._exit(0)  # the worker closed its end
        pid = os.fork()
        if pid == 0:
            _session(sock, room, blob)
        os.waitpid(pid, 0)
        del pid  # freed last, as it was made first (see the module's docstring)


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
