"""EnergyMeter counts the CPU time of the programs the sandbox runs.

The sandbox's warm fork server is a live child that forks one process per run and reaps it, so a run's CPU
time ends up in the server's children's times, not in this process's. The tests reproduce that shape with
a child that spawns a grandchild, which burns a known amount of CPU and is reaped while the child lives on.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from perfrl_trl.energy import EnergyMeter

BURN_S = 0.5
# Burns until its own CPU clock (interpreter start-up included) reaches BURN_S, however loaded the machine.
_GRANDCHILD = f"import time\nwhile time.process_time() < {BURN_S}: pass\n"
# Runs the grandchild to completion (reaping it), says so, then stays alive until its stdin closes.
_CHILD = (
    "import subprocess, sys\n"
    f"subprocess.run([sys.executable, '-S', '-c', {_GRANDCHILD!r}], check=True)\n"
    "print('reaped', flush=True)\n"
    "sys.stdin.read()\n"
)


def start_child() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-S", "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_counts_a_grandchild_reaped_by_a_live_child():
    child = start_child()
    try:
        with EnergyMeter(watts_per_core=10.0, interval_s=0.2) as meter:
            assert child.stdout.readline() == "reaped\n"
            # The meter reads now, with the child still alive: as a fork server is during training.
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    cpu = meter.reading.cpu_seconds
    # Two interpreter start-ups and the meter's own sampling cost a little; counting the burn twice would not fit.
    assert BURN_S <= cpu < BURN_S + 0.45, cpu
    if meter.reading.method == "estimate":
        assert meter.reading.joules == pytest.approx(cpu * 10.0)


def test_counts_a_child_that_exits_and_is_reaped_inside_the_span():
    with EnergyMeter(interval_s=0.2) as meter:
        child = start_child()
        assert child.stdout.readline() == "reaped\n"
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    # Once reaped, the child's and grandchild's times move into this process's children's times: still once.
    assert BURN_S <= meter.reading.cpu_seconds < BURN_S + 0.45, meter.reading.cpu_seconds


def test_reading_keeps_its_interface():
    burn = BURN_S / 2
    with EnergyMeter(use_gpu=False, interval_s=0.05) as meter:
        start = time.process_time()
        while time.process_time() - start < burn:
            pass
    reading = meter.reading
    assert reading.method in ("nvml", "rapl", "estimate")
    assert reading.seconds > 0 and reading.kilojoules == reading.joules / 1000.0
    # The busy loop is this process's own CPU time (read in 10 ms ticks at both ends, sampling thread included).
    assert burn - 0.02 <= reading.cpu_seconds < burn + 0.45, reading.cpu_seconds
    # Busy work uses energy, and the peak over the sampling intervals is never below the span's mean power.
    assert reading.joules > 0 and reading.peak_watts >= reading.joules / reading.seconds
