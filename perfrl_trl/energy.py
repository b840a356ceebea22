"""Energy and peak power of a training stage: measured where the hardware tells, estimated otherwise.

Sources, best first:
- ``nvml``: GPU board energy from NVIDIA's management library (``pynvml``), when a GPU is in use;
- ``rapl``: CPU package energy from Linux's powercap interface (``/sys/class/powercap/intel-rapl:*``);
- ``estimate``: CPU-seconds used by this process and all its descendants (the sandbox's fork server and the
  programs it runs included) times an assumed power per busy core (``watts_per_core``, 12 W by default).
  This is an **estimate**, and every report carries its ``method`` so that nobody mistakes it for a
  measurement.

Every reading also carries those CPU-seconds, whichever method gave the energy.
"""

from __future__ import annotations

import glob
import threading
import time
from dataclasses import dataclass

import psutil


@dataclass
class EnergyReading:
    """Energy of one measured span: joules, peak power over the sampling intervals, and how it was obtained.

    ``seconds`` is wall-clock time; ``cpu_seconds`` the CPU time of this process and its descendants over the
    span (the basis of the ``estimate`` method, reported for every method).
    """

    joules: float
    peak_watts: float
    seconds: float
    method: str
    cpu_seconds: float = 0.0

    @property
    def kilojoules(self) -> float:
        return self.joules / 1000.0


def _total_cpu(times) -> float:
    # children_* are the reaped children's times, which a reaped process hands on to its parent's: the
    # programs a live fork server has run and waited for are only there.
    return times.user + times.system + times.children_user + times.children_system


def _cpu_seconds(process: psutil.Process | None = None) -> float:
    """CPU-seconds of ``process`` (this one by default) and every descendant, live or reaped."""
    process = process or psutil.Process()
    total = _total_cpu(process.cpu_times())
    for child in process.children(recursive=True):
        try:
            total += _total_cpu(child.cpu_times())
        except psutil.Error:  # exited (and was reaped) since it was listed: its parent's times now hold it
            continue
    return total


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
        self._process = psutil.Process()
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
        return "estimate", lambda: _cpu_seconds(self._process) * self.watts_per_core

    def _sample(self) -> None:
        last_t, last_e = time.monotonic(), self._read()
        while not self._stop.wait(self.interval_s):
            now, energy = time.monotonic(), self._read()
            if now > last_t:
                self._peak = max(self._peak, (energy - last_e) / (now - last_t))
            last_t, last_e = now, energy

    def _read_both(self) -> tuple[float, float]:
        """CPU-seconds and joules so far; for ``estimate`` from one snapshot, so that joules = cpu x watts."""
        cpu = _cpu_seconds(self._process)
        return cpu, cpu * self.watts_per_core if self.method == "estimate" else self._read()

    def __enter__(self) -> EnergyMeter:
        self._peak = 0.0
        self._start_t = time.monotonic()
        self._start_cpu, self._start_e = self._read_both()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        seconds = time.monotonic() - self._start_t
        end_cpu, end_e = self._read_both()
        joules, cpu = max(0.0, end_e - self._start_e), max(0.0, end_cpu - self._start_cpu)
        peak = max(self._peak, joules / seconds if seconds > 0 else 0.0)
        self.reading = EnergyReading(joules, peak, seconds, self.method, cpu)
