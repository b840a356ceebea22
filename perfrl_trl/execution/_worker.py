"""The fork server that runs inside the sandbox (standard library only).

The host starts this file as ``python -I -c <source>`` inside bubblewrap (or under rlimits alone) and
speaks to it over stdin/stdout with length-prefixed frames. For every test it forks a child from this
small, already-initialised process, so a run costs a fork instead of an interpreter start-up, and it
reads the child's own CPU time from the kernel (``wait4`` rusage), which the program cannot forge.

What the child can reach, and why that is safe:
- it inherits this process's memory, which only ever holds the program and the test *inputs*: the
  expected outputs stay with the host, which compares;
- stdin is a sealed memfd reopened read-only, so a program cannot rewrite the input of later trials;
- every other descriptor is closed, and this process is non-dumpable, so ``/proc/<ppid>/fd`` and
  ``/proc/<ppid>/mem`` are closed to it; the one exception, when runs drop to another uid, is a
  read-only ``O_PATH`` handle on each interpreter folder that uid could not otherwise reach, which is
  what the run is meant to import from;
- a seccomp filter refuses it new processes, signals to others, ptrace and cross-process memory
  access; should this process die anyway (an architecture without the filter, the OOM killer), the
  host sees EOF, scores the run as a sandbox error, and starts a new worker.
"""

# Cheap standard-library modules that programs use all the time. Loading them once here keeps their
# import cost out of every measured run; heavy ones (numpy) are left out on purpose, because dropping
# such an import is itself a real speed-up that the timing must see.
import bisect  # noqa: F401
import builtins
import collections  # noqa: F401
import ctypes
import errno
import fcntl
import functools  # noqa: F401
import gc
import heapq  # noqa: F401
import itertools  # noqa: F401
import json
import math  # noqa: F401
import operator  # noqa: F401
import os
import re
import resource
import select
import signal
import string  # noqa: F401
import struct
import sys
import time
import traceback

STATUS_COMPILE = 3
_HEADER = struct.Struct(">I")
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _send(obj, blobs=()):
    header = json.dumps(obj).encode()
    payload = _HEADER.pack(len(header)) + header + b"".join(blobs)
    view = memoryview(payload)
    while view:
        n = os.write(1, view)
        view = view[n:]


def _prctl(option, value):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


# A seccomp filter for the children: no new processes (fork, vfork, clone without CLONE_THREAD), so a
# fork bomb dies at its first fork whatever the uid (RLIMIT_NPROC is not enforced for real root).
# Threads stay allowed. Foreign syscall ABIs (int 0x80, x32) are refused, as they would bypass it.
# Numbers: fork, vfork, kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_send_signal,
# ptrace, process_vm_readv, process_vm_writev.
# Signals, ptrace and cross-process memory access are refused too: at the rlimits level a run may share
# the caller's uid, and must not be able to kill(-1), attach to, or write into the caller.
_ARCHES = {
    "x86_64": (
        0xC000003E,
        {"clone": 56, "clone3": 435},
        (57, 58, 62, 200, 234, 129, 297, 424, 101, 310, 311),
    ),
    "aarch64": (0xC00000B7, {"clone": 220, "clone3": 435}, (129, 130, 131, 138, 240, 424, 117, 270, 271)),
}
_EPERM, _ENOSYS, _CLONE_THREAD = 1, 38, 0x10000
# execve, execveat: refused to a program whose instructions are counted, which would leave valgrind by them.
_EXEC_NRS = {"x86_64": (59, 322), "aarch64": (221, 281)}


def _seccomp_program(deny_exec=False):
    machine = os.uname().machine
    if machine not in _ARCHES:
        return None
    arch, nrs, denied = _ARCHES[machine]
    if deny_exec:
        denied = (*denied, *_EXEC_NRS[machine])
    ret_allow, ret_eperm, ret_enosys = 0x7FFF0000, 0x00050000 | _EPERM, 0x00050000 | _ENOSYS
    # (code, jt, jf, k) with jump targets as labels, resolved below; BPF only jumps forwards.
    prog = [
        (0x20, None, None, 4),  # A = arch
        (0x15, None, "deny", arch),
        (0x20, None, None, 0),  # A = syscall number
        (0x35, "deny", None, 0x40000000),  # x32 ABI
    ]
    for nr in denied:
        prog.append((0x15, "deny", None, nr))
    prog += [
        (0x15, "nosys", None, nrs["clone3"]),  # glibc then falls back to clone, which we can inspect
        (0x15, "clone", None, nrs["clone"]),
        ("allow",),
        ("clone:",),
        (0x20, None, None, 16),  # A = low word of clone flags
        (0x45, "allow2", "deny", _CLONE_THREAD),
        ("allow2:",),
        (0x06, None, None, ret_allow),
        ("deny:",),
        (0x06, None, None, ret_eperm),
        ("nosys:",),
        (0x06, None, None, ret_enosys),
    ]
    code, labels = [], {}
    for item in prog:
        if item == ("allow",):
            code.append((0x06, None, None, ret_allow))
        elif len(item) == 1:
            labels[item[0][:-1]] = len(code)
        else:
            code.append(item)
    insns = []
    for i, (op, jt, jf, k) in enumerate(code):
        jt = 0 if jt is None else labels[jt] - i - 1
        jf = 0 if jf is None else labels[jf] - i - 1
        insns.append(struct.pack("=HBBI", op, jt, jf, k))
    blob = ctypes.create_string_buffer(b"".join(insns))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(insns), ctypes.addressof(blob))
    return fprog, blob


# Loaded once here, before any fork, so that no measured run pays for the dynamic loader.
_LIBC = ctypes.CDLL(None, use_errno=True)


def _install_seccomp(program):
    libc = _LIBC
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
    fprog, _blob = program
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP failed")


def _sealed_memfd(data):
    fd = os.memfd_create("stdin", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def _enter_run(stdin_fd, out_w, err_w, limits):
    """A run's first steps in its forked child: its own session, the rlimits, the test input on 0 and the pipes
    on 1 and 2."""
    os.setsid()
    for name, value in limits["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    fd = os.open(f"/proc/self/fd/{stdin_fd}", os.O_RDONLY)
    os.dup2(fd, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)


def _drop_uid(limits):
    """Run as the unprivileged uid where the worker was started as root at the rlimits level."""
    drop = limits["drop_uid"]
    if drop is not None:
        os.setgroups([])
        os.setgid(drop)
        os.setuid(drop)


def _child(code_obj, stdin_fd, out_w, err_w, workdir, limits):
    """Runs in the forked child: lock it down, then execute the program as ``__main__``."""
    try:
        _enter_run(stdin_fd, out_w, err_w, limits)
        low = 3
        for keep in limits["import_fds"]:
            os.closerange(low, keep)
            low = keep + 1
        os.closerange(low, 1 << 16)
        os.chdir(workdir)
        _drop_uid(limits)
        if limits["seccomp"] is not None:
            _install_seccomp(limits["seccomp"])
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


# The counting server of this worker (``_count_runner``, under valgrind): started at the first counted run and
# kept for every one after, so valgrind's start-up is paid once. Its pid, the socket its sessions take runs on,
# the socket that asks it for a session, and the read end of its valgrind log.
_counter = {}
# Records its sessions send (see _count_runner.RECORD).
_RECORD = struct.Struct(">cqqqqd")
_counter_failure = ["the counting server did not start"]  # why the last server failed, for the runs it fails
# Empty runs through a new server before the first count, so the server's own memory has settled into the
# state it returns to after every run: the first sessions it forks then start like every later one.
_COUNTER_WARM_UP = 2


def _start_counter(req):
    """Start the counting server as this process's child, locked down like a run.

    Its descriptors: the socket on 3, valgrind's log on 4 (``counter_options`` names 4), the go socket on 5,
    nothing else. It stays in this process's group, so the host's kill of the worker's group takes it too.
    """
    import socket  # only workers that count need it; others keep it out of what their runs find loaded

    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    log_r, log_w = os.pipe()
    go_w, go_r = socket.socketpair()  # a socket, not a pipe: writing to a dead server must not raise SIGPIPE
    pid = os.fork()
    if pid == 0:
        try:
            # Out of the way first: any may sit on 0 to 5 already.
            moved = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (there.fileno(), log_w, go_r.fileno()))
            sock_fd, log_fd, go_fd = moved
            null = os.open("/dev/null", os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(log_fd, 2)  # valgrind's complaints when it cannot start, for the count's error
            os.dup2(sock_fd, 3)
            os.dup2(log_fd, 4)
            os.dup2(go_fd, 5)
            os.closerange(6, 1 << 16)
            os.chdir(req["root"])
            # valgrind keeps the descriptor limit it starts with (its own descriptors sit above it) and refuses
            # a guest's change of it: so it is the server's, for all its runs. The other limits are per run.
            nofile = req["rlimits"]["RLIMIT_NOFILE"]
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            _drop_uid(req)
            # The server must start the same however the host was started: a signal ignored here (a shell
            # ignores SIGINT for a job it puts in the background) stays ignored through exec, and that moved
            # counts by up to 165 instructions.
            for sig in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
                try:
                    signal.signal(sig, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            counter = req["counter"]
            argv = [*counter["valgrind"], counter["python"], "-S", "-s", "-B", "-c", counter["runner"]]
            argv.append(json.dumps({"path": counter["path"], "filter": req["count_filter"]}))
            env = dict(os.environ)
            env["PYTHONHASHSEED"] = "0"  # str hashes, hence set and dict orders, the same in every run
            # Libraries that stamp the date into what they build at import (numpy's f2py, imported with scipy)
            # take it from here instead of the clock, whose digits moved a count by up to 76 instructions.
            env["SOURCE_DATE_EPOCH"] = "0"
            os.execve(argv[0], argv, env)
        except BaseException:
            pass
        os._exit(125)
    there.close()
    os.close(log_w)
    go_r.close()
    os.set_blocking(log_r, False)
    _counter.update(pid=pid, sock=here, go_w=go_w, log_r=log_r)
    empty = compile("", "main.py", "exec")
    for i in range(_COUNTER_WARM_UP):
        result, _ = _run_one(empty, b"", {**req, "count": True, "source": b""}, -i - 100)
        if result.get("instructions") is None:
            _stop_counter()
            _counter_failure[0] = result["count_error"]
            break


def _stop_counter(kill=True):
    """Stop the counting server (it died, hung or garbled a record); the next counted run starts a new one."""
    if not _counter:
        return
    if kill:
        try:
            os.kill(_counter["pid"], signal.SIGKILL)
        except OSError:
            pass
    try:
        os.waitpid(_counter["pid"], 0)
    except ChildProcessError:
        pass  # already reaped (by _reap_children)
    _counter["sock"].close()
    _counter["go_w"].close()
    os.close(_counter["log_r"])
    _counter.clear()


def _ensure_counter(req):
    """Start the counting server if this worker has none running."""
    if _counter:
        try:
            if os.waitpid(_counter["pid"], os.WNOHANG)[0] != 0:
                _stop_counter(kill=False)
        except ChildProcessError:
            _stop_counter(kill=False)
    if not _counter:
        _start_counter(req)


def _drain(fd, into, cap):
    """Read what a non-blocking ``fd`` holds now into ``into``, up to ``cap`` bytes in all; False past it."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return True
        into.append(chunk)
        if sum(map(len, into)) > cap:
            return False


def _counted_start(stdin_fd, out_w, err_w, src_fd, workdir, req):
    """Hand one run to a session of the counting server.

    Returns the session's pid and a pidfd that becomes readable when it exits, or ``None``, ``None`` and why,
    with the server stopped.
    """
    if not _counter:
        return None, None, _counter_failure[0]
    import socket

    rlimits = {name: value for name, value in req["rlimits"].items() if name != "RLIMIT_NOFILE"}
    settings = json.dumps({"rlimits": rlimits, "workdir": workdir}).encode()
    settings_fd = _sealed_memfd(settings)
    said = []
    _drain(_counter["log_r"], said, 1 << 20)  # what earlier runs left unread belongs to none of this run
    sock = _counter["sock"]
    sock.setblocking(False)
    try:
        while sock.recv(_RECORD.size):  # a record a killed session sent just before it went is no one's
            pass
    except BlockingIOError:
        pass
    except OSError:
        pass  # a dead server: found below
    session = pidfd = None
    try:
        # MSG_NOSIGNAL: a server that died must not take this process with it (SIGPIPE kills it here).
        _counter["go_w"].send(b"g", socket.MSG_NOSIGNAL)
        socket.send_fds(sock, [b"r"], [stdin_fd, out_w, err_w, src_fd, settings_fd], socket.MSG_NOSIGNAL)
        sock.settimeout(30)
        tag, session, _, _, _, _ = _RECORD.unpack(sock.recv(_RECORD.size))
        if tag != b"s":
            raise OSError(f"the counting session sent {tag!r} first")
        try:
            pidfd = os.pidfd_open(session)
        except ProcessLookupError:
            pidfd = None  # gone already (and reaped by the server): its report is on the socket
        error = None
    except (OSError, struct.error) as exc:
        _drain(_counter["log_r"], said, 1 << 20)
        lines = [line for line in b"".join(said).decode("utf-8", "replace").splitlines() if line.strip()]
        error = _counter_failure[0] = f"the counting server is not running ({exc}): {lines[-3:]}"
        _stop_counter()
        session = None
    else:
        sock.setblocking(True)
    os.close(settings_fd)
    return session, pidfd, error


# valgrind's summary line of one process: "==<pid>== I   refs:      328,203,762".
_REFS = re.compile(rb"^==(\d+)== I\s+refs:\s+([\d,]+)\s*$", re.MULTILINE)


def _instructions(log, empty_pid, program_pid):
    """The program's instructions from valgrind's log of a counted run, or why there are none.

    The empty child reports before the program's child exists, and the program's child cannot write after its
    own report. The program may write lines that look like reports (should it reach the log), but only between
    those two: so the first report with the empty child's pid and the last with the program's are real.
    """
    refs = [(int(pid), int(n.replace(b",", b""))) for pid, n in _REFS.findall(log)]
    empty = [n for pid, n in refs if pid == empty_pid][:1]
    program = [n for pid, n in refs if pid == program_pid][-1:]
    if not empty or not program:
        said = [line for line in log.decode("utf-8", "replace").splitlines() if line.strip("= 0123456789")]
        return None, f"valgrind reported no count for the {'program' if empty else 'empty run'}: {said[-1:]}"
    return program[0] - empty[0], None


def _past_small_pids():
    """Use up the process ids below 300, so that every counted run sees pids of the same kind.

    The runner handles its children's pids as Python ints, and CPython keeps the ints up to 256 ready-made:
    below that a pid costs no allocation, above it one, and a count differs by about 160 instructions. In a
    fresh PID namespace (bubblewrap) the first pids are small; the kernel never hands out pids below 300 again
    once they wrap, so past 300 every run is alike.
    """
    for _ in range(400):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        if pid >= 300:
            return


def _reap_others(in_namespace, pgid, spare=None):
    """Kill everything the run left behind (daemons, forks) so nothing outlives it, but ``spare``.

    ``spare`` is the counting server, kept only where counted programs cannot start processes (the seccomp
    filter): then nothing a run leaves can be in a position that a sweep of ``/proc`` would miss.
    """
    if in_namespace:
        me = os.getpid()
        for _ in range(400):
            if spare is None:
                # In our own PID namespace, kill(-1) reaches every process but init and us, atomically
                # with respect to fork, so a fork bomb cannot outrun it.
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                for p in os.listdir("/proc"):
                    if p.isdigit() and int(p) not in (1, me, spare):
                        try:
                            os.kill(int(p), signal.SIGKILL)
                        except OSError:
                            pass
            _reap_children()
            # Killed processes take a moment to go; the next run must not share the CPU with them.
            if not [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me, spare)]:
                break
            time.sleep(0.005)
    else:
        try:
            if pgid is not None:  # None: nothing ran (and killpg(0) would be this process's own group)
                os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # As child subreaper we adopt orphans (double-forked daemons); hunt them until none is left.
        me = str(os.getpid())
        for _ in range(50):
            found = False
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/stat", "rb") as fh:
                        stat = fh.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                if stat[1].decode() == me and int(pid) != spare:
                    found = True
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except OSError:
                        pass
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
            if not found:
                break
            time.sleep(0.001)
    _reap_children()


def _reap_children():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break


def _run_one(code_obj, data, req, index):
    count = req.get("count", False)
    if count:
        _ensure_counter(req)  # before this run's folder exists: the server's first runs use that folder too
    # A counted run always works in the same folder: a program whose imports read the working folder (through
    # os.path.abspath, say) would otherwise count more instructions for a longer run number.
    workdir = os.path.join(req["root"], "count" if req.get("count") else f"run{index}")
    while os.path.lexists(workdir):  # an interpreter's folder may sit in the scratch as /tmp/run1
        workdir += "_"
    os.mkdir(workdir, 0o777)
    os.chmod(workdir, 0o777)
    stdin_fd = _sealed_memfd(data)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    start = time.perf_counter()
    if count:
        # The run is a session of the counting server, not a child of this process: its end comes as the
        # server's records on the socket, and valgrind's reports on the server's log.
        src_fd = _sealed_memfd(req["source"])
        pid, ended, start_error = _counted_start(stdin_fd, out_w, err_w, src_fd, workdir, req)
        os.close(src_fd)
        log_r = _counter["log_r"] if pid is not None else None
    else:
        pid = os.fork()
        if pid == 0:
            os.close(out_r)
            os.close(err_r)
            _child(code_obj, stdin_fd, out_w, err_w, workdir, req)
        ended = os.pidfd_open(pid)
    os.close(out_w)
    os.close(err_w)
    os.close(stdin_fd)
    deadline = start + req["timeout"]
    cap = req["output_cap"]
    out, err, log = [], [], []
    sizes = {out_r: 0, err_r: 0}
    bufs = {out_r: out, err_r: err}
    open_fds = set(bufs)
    timed_out = over_cap = False
    exited = ended is None  # the counting server could not take the run, or its session is gone already
    poller = select.poll()
    for fd in bufs:
        poller.register(fd, select.POLLIN)
    if not exited:
        poller.register(ended, select.POLLIN)
    if count and not exited:
        poller.register(log_r, select.POLLIN)
    # Loop until the child has exited *and* its pipes are drained: a child that closes its pipes and
    # then sleeps must still meet the deadline.
    while not over_cap and (open_fds or not exited):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            timed_out = True
            break
        if exited:
            # The program is gone; a descendant holding the pipe open must not keep us waiting.
            remaining = min(remaining, 0.05)
        events = poller.poll(remaining * 1000)
        if not events and exited:
            break
        for fd, _ in events:
            if fd == ended:
                exited = True
                poller.unregister(ended)
                continue
            if count and fd == log_r:
                over_cap = not _drain(fd, log, cap)
                if over_cap:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                poller.unregister(fd)
                open_fds.discard(fd)
                continue
            sizes[fd] += len(chunk)
            if sizes[fd] > cap:
                over_cap = True
                break
            bufs[fd].append(chunk)
    if (timed_out or over_cap) and pid is not None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if count:
        wstatus, maxrss, cpu, report = _counted_end(pid, ended, timed_out or over_cap, log, cap)
    else:
        _, wstatus, rusage = os.wait4(pid, 0)
        maxrss, cpu = rusage.ru_maxrss, rusage.ru_utime + rusage.ru_stime
        os.close(ended)
    wall = time.perf_counter() - start
    # The counting server stays, after plain runs too, where no run can start a process to hide from the sweep
    # (see _reap_others): the seccomp filter refuses them new processes.
    spare = _counter["pid"] if _counter and req["seccomp"] is not None else None
    _reap_others(req["namespace"], pid, spare)
    for fd in bufs:
        os.close(fd)
    _rmtree(workdir)
    if req["namespace"]:
        # Everything writable is scratch that only runs use; wipe it all, so no trial sees another's files.
        # The read-only mounts of the interpreter's folders stay.
        _wipe("/tmp", req["keep"])
        _wipe("/dev/shm", req["keep"])
        _remove_sysv_ipc()
    else:
        # The worker's own folder is only ever used by runs: a program that wrote next to its working
        # folder ("../cache") must not find that file again on a later trial. A run with our uid may have
        # taken our permissions on it away; we own it, so we take them back.
        try:
            os.chmod(req["root"], 0o711)
        except OSError:
            pass
        _wipe(req["root"], ())
    stdout = b"".join(out)
    stderr = b"".join(err)[-4096:]
    result = {
        "exit": os.waitstatus_to_exitcode(wstatus),
        "cpu": cpu,
        "wall": wall,
        "maxrss_kb": maxrss,
        "timeout": timed_out,
        "output_limit": over_cap,
        "stdout_len": len(stdout),
        "stderr_len": len(stderr),
    }
    if count:
        failed = result["exit"] != 0 or timed_out or over_cap
        tail = [line for line in b"".join(log).decode("utf-8", "replace").splitlines() if "==" not in line]
        if pid is None:
            result["instructions"], result["count_error"] = None, start_error
        elif failed:
            result["instructions"], result["count_error"] = (
                None,
                f"the run failed (exit {result['exit']}) {tail[-1:]}",
            )
        elif report is None:
            result["instructions"], result["count_error"] = None, "the counting session did not report"
        else:
            _, empty_pid, program_pid, _, _, _ = report
            result["instructions"], result["count_error"] = _instructions(
                b"".join(log), empty_pid, program_pid
            )
    return result, stdout + stderr


def _counted_end(pid, ended, killed, log, cap):
    """A counted run's wait status, maximum resident set, CPU time and the session's report, once it is gone.

    The session is the server's child, not this process's: its end is its pidfd, and what it saw of the program
    comes in its report on the socket, sent before it exits. A session that was killed, or that failed before
    the program ran, sends none.
    """
    if pid is None:
        return 125 << 8, 0, 0.0, None
    if ended is not None:
        select.select([ended], [], [], 10)  # killed a moment ago, or already gone
        os.close(ended)
    sock = _counter["sock"]
    sock.setblocking(False)
    try:
        report = _RECORD.unpack(sock.recv(_RECORD.size))
    except (OSError, struct.error):
        report = None
    sock.setblocking(True)
    if report is None or report[0] != b"p":
        return (signal.SIGKILL if killed else 125 << 8), 0, 0.0, None
    _drain(_counter["log_r"], log, cap)  # valgrind's last reports, written before the session went
    _, _, _, status, maxrss, cpu = report
    return status, maxrss, cpu, report


def _remove_sysv_ipc():
    """SysV IPC objects outlive their creator; in our private IPC namespace, remove every one of them."""
    libc = None
    for kind, func in (("shm", "shmctl"), ("sem", "semctl"), ("msg", "msgctl")):
        try:
            with open(f"/proc/sysvipc/{kind}") as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            libc = libc or ctypes.CDLL(None, use_errno=True)
            ident = int(line.split()[1])
            if kind == "sem":
                getattr(libc, func)(ident, 0, 0, None)  # IPC_RMID = 0
            else:
                getattr(libc, func)(ident, 0, None)


def _wipe(folder, keep):
    """Remove everything in ``folder`` but the paths in ``keep``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        full = os.path.join(folder, name)
        if full in keep:
            continue
        if os.path.isdir(full) and not os.path.islink(full):
            _rmtree(full)
        else:
            try:
                os.unlink(full)
            except OSError:
                pass


def _import_through_fds():
    """Let runs that drop to another uid import from folders under a private one (``/root/.pyenv``).

    Each import folder that another uid cannot reach is opened here, while still privileged, and every
    import path under it (``sys.path`` and each imported package's ``__path__``) is rewritten to
    ``/proc/self/fd/N/...``: a lookup through that descriptor needs read access to the folder itself, not
    to its ancestors. A process may always follow its own descriptors, dumpable or not. Returns the
    descriptors, which every run keeps open.
    """
    mapping = {}
    for path in sys.path:
        if path and path not in mapping and os.path.isdir(path) and not _reachable_by_others(path):
            mapping[path] = os.open(path, os.O_PATH | os.O_DIRECTORY)
    if not mapping:
        return []

    def remap(path):
        best = max((d for d in mapping if path == d or path.startswith(d + "/")), key=len, default=None)
        return path if best is None else f"/proc/self/fd/{mapping[best]}{path[len(best) :]}"

    sys.path[:] = [remap(p) for p in sys.path]
    for module in list(sys.modules.values()):
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [remap(p) for p in search]
    sys.path_importer_cache.clear()
    # Build the finders (and their folder listings) once here rather than in every measured run.
    import importlib.machinery

    importlib.machinery.PathFinder.find_spec("_perfrl_no_such_module")
    return sorted(mapping.values())


def _reachable_by_others(path):
    """Whether a uid that is neither owner nor group could reach ``path`` (each ancestor has o+x)."""
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


def _rmtree(path):
    """Remove a run directory even if the program chmod-ed things away from us."""
    try:
        for root, dirs, files in os.walk(path, topdown=False):
            for name in files:
                try:
                    os.unlink(os.path.join(root, name))
                except OSError:
                    pass
            for name in dirs:
                full = os.path.join(root, name)
                try:
                    os.chmod(full, 0o700)
                    os.rmdir(full)
                except OSError:
                    pass
        os.rmdir(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            pass


def _serve(root, namespace, options):
    _prctl(_PR_SET_DUMPABLE, 0)
    if not namespace:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    drop_uid = options["drop_uid"]
    keep = frozenset(options["keep"])
    import_fds = _import_through_fds() if drop_uid is not None else []
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    counter = 0
    seccomp = _seccomp_program()
    count_settings = options.get("counter")
    count_filter = None
    if count_settings is not None:
        strict = _seccomp_program(deny_exec=True)
        count_filter = "" if strict is None else strict[1].raw[: strict[0].len * 8].hex()
        # The runner imports from where this process does (it starts without site, to start faster).
        count_settings = {**count_settings, "path": [p for p in sys.path if p]}
        _past_small_pids()
    # Freezing the heap keeps the children's garbage collector off the inherited objects, which
    # would otherwise copy-on-write their pages and bill that to every measured run.
    gc.collect()
    gc.freeze()
    # What a run costs when the program does nothing (fork aftermath, set-up, exit): the analogue of
    # interpreter start-up, left out of every timing so that it does not squeeze ratios towards 1.
    empty = compile("", "main.py", "exec")
    calib = {
        "root": root,
        "namespace": namespace,
        "seccomp": seccomp,
        "timeout": 10.0,
        "output_cap": 1 << 16,
        "rlimits": {},
        "drop_uid": drop_uid,
        "import_fds": import_fds,
        "keep": keep,
    }
    costs = sorted(_run_one(empty, b"", calib, -i)[0]["cpu"] for i in range(1, 10))
    overhead = costs[len(costs) // 2]
    _send({"ready": True, "pid": os.getpid(), "overhead_cpu": overhead})
    while True:
        try:
            (size,) = _HEADER.unpack(_read_exact(0, _HEADER.size))
            req = json.loads(_read_exact(0, size))
            blob = _read_exact(0, req["blob_len"])
        except EOFError:
            return
        req["root"] = root
        req["namespace"] = namespace
        req["drop_uid"] = drop_uid
        req["import_fds"] = import_fds
        req["keep"] = keep
        req["seccomp"] = seccomp if req.get("no_fork", True) else None
        source = blob[: req["code_len"]]
        if req.get("count"):
            if count_settings is None:
                _send(
                    {
                        "compiled": False,
                        "error": "this worker was not started to count instructions",
                        "runs": [],
                    }
                )
                continue
            req["counter"], req["count_filter"], req["source"] = count_settings, count_filter, source
        try:
            code_obj = compile(source, "main.py", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
            _send({"compiled": False, "error": f"{type(exc).__name__}: {exc}"[:2000], "runs": []})
            continue
        offset = req["code_len"]
        inputs = []
        for n in req["input_lens"]:
            inputs.append(blob[offset : offset + n])
            offset += n
        runs, blobs = [], []
        for _ in range(req["repeats"]):
            for data in inputs:
                counter += 1
                result, out = _run_one(code_obj, data, req, counter)
                runs.append(result)
                blobs.append(out)
                failed = result["exit"] != 0 or result["timeout"] or result["output_limit"]
                if failed and req["stop_on_error"]:
                    break
            else:
                continue
            break
        del code_obj, inputs, blob
        _send({"compiled": True, "runs": runs}, blobs)


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2] == "ns", json.loads(sys.argv[3]))
