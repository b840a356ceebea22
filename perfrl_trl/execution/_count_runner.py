"""Counts the instructions of one run of a program, under valgrind, inside the sandbox (standard library only).

The sandbox worker's child starts this file as ``valgrind --tool=cachegrind ... python -S -s -B -c <source>
<settings>`` with the test input on stdin and the program's source on descriptor 3. It is a fresh
interpreter, so with the hash seed fixed (``PYTHONHASHSEED=0``) every instruction it executes is the same
from one run to the next, on any machine with the same interpreter and valgrind.

Only the program's part is counted. Under valgrind a forked child's count includes what its parent had
executed before the fork, so this process forks twice from the same point: first an empty child (E) that
exits at once, then the program's child (P). ``count(P) - count(E)`` is the program's own work plus a
constant (the fork and exit of a child, calibrated on the empty program by the host): interpreter start-up,
valgrind's, the imports below and the compilation of the program are in both and cancel out.

Both children install the worker's seccomp filter (no new processes, no signals to others, no ptrace, and
here no ``execve`` either: a program that replaced itself would leave valgrind) before anything else, so the
program runs under the same restrictions as in the CPU-time mode. This process waits for P and exits as P
did, so the worker classifies the run as usual.
"""

# The same cheap modules the worker preloads: importing them costs a program nothing in either cost mode.
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
import re  # noqa: F401
import signal
import string  # noqa: F401
import sys
import traceback


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
        if blob:
            _install_filter(blob)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
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


def _main(settings):
    sys.path[:] = settings["path"]
    blob = bytes.fromhex(settings["filter"])
    chunks = []
    while True:
        chunk = os.read(3, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(3)
    try:
        code_obj = compile(b"".join(chunks), "main.py", "exec", dont_inherit=True)
    except BaseException:
        os._exit(125)  # the worker compiled it already: this cannot happen for a program that got here
    # Nothing the program does may reach this process: no /proc/<pid>/fd or mem for its children.
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    gc.collect()
    gc.freeze()
    empty = os.fork()
    if empty == 0:
        if blob:
            _install_filter(blob)
        os._exit(0)
    os.waitpid(empty, 0)
    pid = os.fork()
    if pid == 0:
        _program(code_obj, blob)
    _, wstatus = os.waitpid(pid, 0)
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(wstatus) & 0xFF)


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
