"""Energy and peak power of a training stage: measured where the hardware tells, estimated otherwise.

Sources, best first:
- ``nvml``: GPU board energy from NVIDIA's management library (``pynvml``), when a GPU is in use;
- ``rapl``: CPU package energy from Linux's powercap interface (``/sys/class/powercap/intel-rapl:*``);
- ``estimate``: CPU-seconds used by this process and its children (the sandbox workers included) times an
  assumed power per busy core (``watts_per_core``, 12 W by default). This is an **estimate**, and every
  report carries its ``method`` so that nobody mistakes it for a measurement.
"""

from __future__ import annotations

import glob
import os
import resource
import threading
import time
from dataclasses import dataclass


@dataclass
class EnergyReading:
    """Energy of one measured span: joules, peak power over the sampling intervals, and how it was obtained."""

    joules: float
    peak_watts: float
    seconds: float
    method: str

    @property
    def kilojoules(self) -> float:
        return self.joules / 1000.0


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    # Live sandbox workers are not reaped children yet: add their CPU time from /proc.
    return total + _live_children_cpu()


def _live_children_cpu() -> float:
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    parents = {me}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return 0.0
    stats = {}
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
        except (OSError, IndexError, ValueError):
            continue
    changed = True
    while changed:  # descendants of this process, however deep
        changed = False
        for pid, (ppid, _) in stats.items():
            if ppid in parents and pid not in parents:
                parents.add(pid)
                changed = True
    return sum(ticks for pid, (_, ticks) in stats.items() if pid in parents and pid != me) / tick


def _rapl_files() -> list[str]:
    return [p for p in glob.glob("/sys/class/powercap/intel-rapl:*/energy_uj") if p.count(":") == 1]


def _read_rapl(files: list[str]) -> float:
    total = 0.0
    for path in files:
        with open(path) as fh:
            total += int(fh.read()) / 1e6
    return total


class EnergyMeter:
    """Measure a span of work: ``with EnergyMeter() as meter: ...`` then ``meter.reading``.

    Args:
        watts_per_core: Assumed power of one fully busy core, for the ``estimate`` method.
        interval_s: Sampling interval for peak power.
        use_gpu: Try NVML first (set when training on a GPU).

    Example:
        ```python
        >>> from perfrl_trl.energy import EnergyMeter
        >>> with EnergyMeter(interval_s=0.05) as meter:
        ...     _ = sum(i * i for i in range(10**5))
        >>> meter.reading.method in ("nvml", "rapl", "estimate")
        True
        ```
    """

    def __init__(self, watts_per_core: float = 12.0, interval_s: float = 1.0, use_gpu: bool = False):
        self.watts_per_core, self.interval_s = watts_per_core, interval_s
        self.method, self._read = self._pick_source(use_gpu)
        self.reading: EnergyReading | None = None
        self._stop = threading.Event()

    def _pick_source(self, use_gpu: bool):
        if use_gpu:
            try:
                import pynvml

                pynvml.nvmlInit()
                handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
                return (
                    "nvml",
                    lambda: sum(pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles) / 1e3,
                )
            except Exception:
                pass
        files = _rapl_files()
        if files:
            try:
                _read_rapl(files)
                return "rapl", lambda: _read_rapl(files)
            except OSError:
                pass
        return "estimate", lambda: _cpu_seconds() * self.watts_per_core

    def _sample(self) -> None:
        last_t, last_e = time.monotonic(), self._read()
        while not self._stop.wait(self.interval_s):
            now, energy = time.monotonic(), self._read()
            if now > last_t:
                self._peak = max(self._peak, (energy - last_e) / (now - last_t))
            last_t, last_e = now, energy

    def __enter__(self) -> EnergyMeter:
        self._peak = 0.0
        self._start_t, self._start_e = time.monotonic(), self._read()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        seconds = time.monotonic() - self._start_t
        joules = max(0.0, self._read() - self._start_e)
        peak = max(self._peak, joules / seconds if seconds > 0 else 0.0)
        self.reading = EnergyReading(joules, peak, seconds, self.method)
