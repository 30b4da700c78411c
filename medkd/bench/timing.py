"""Time one workload: warm-up, timed iterations with a progress bar, latency quantiles, memory and power."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medkd.bench.memory import PeakMemory
from medkd.bench.schema import latency_summary
from medkd.bench.tegrastats import TegrastatsMonitor, energy_summary
from medkd.data.progress import track


@dataclass
class Workload:
    """One graph ready to run: ``run()`` does one synchronised inference on prepared inputs."""

    graph: str
    run: Callable[[], Any]
    inputs: dict[str, list[int]]
    batch: int
    file: str | None = None
    precision: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TimingOptions:
    """How a workload is timed."""

    warmup: int = 3
    iterations: int = 20
    power: bool = False
    progress: bool = True


def _timed_loop(workload: Workload, options: TimingOptions, label: str) -> tuple[list[float], float | None, float, float]:
    first_call = None
    for index in track(range(options.warmup), options.warmup, f"{label} warm-up", enabled=options.progress and options.warmup > 0):
        started = time.perf_counter()
        workload.run()
        if index == 0:
            first_call = time.perf_counter() - started
    seconds = []
    window_start = time.perf_counter()
    for _ in track(range(options.iterations), options.iterations, label, enabled=options.progress):
        started = time.perf_counter()
        workload.run()
        seconds.append(time.perf_counter() - started)
    return seconds, first_call, window_start, time.perf_counter()


def measure(workload: Workload, options: TimingOptions, label: str) -> dict[str, Any]:
    """The timing part of a results entry: latency, throughput, first call, memory and (optionally) power."""
    monitor = TegrastatsMonitor() if options.power else None
    with PeakMemory() as peak:
        if monitor is None:
            seconds, first_call, start, stop = _timed_loop(workload, options, label)
        else:
            with monitor:
                seconds, first_call, start, stop = _timed_loop(workload, options, label)
    latency = latency_summary(seconds)
    return {
        "latency_ms": latency,
        "throughput_per_s": workload.batch * 1e3 / latency["mean"],
        "first_call_ms": None if first_call is None else first_call * 1e3,
        "memory": peak.result(),
        "power": None if monitor is None else energy_summary(monitor.samples, start, stop, options.iterations * workload.batch),
    }
