"""``tegrastats`` on a Jetson: power rails parsed from its lines, sampled in the background, energy per inference.

A line carries RAM, CPU and engine loads, temperatures and the INA3221 power rails as
``NAME current/average`` in mW (``VDD_IN 4850mW/4850mW``; JetPack 6 adds a maximum, ``.../5139mW``;
JetPack 4 prints bare numbers, ``POM_5V_IN 3410/3410``). The board's input power is ``VDD_IN``
(Orin Nano / NX, Xavier NX, TX2) or ``POM_5V_IN`` (Nano); AGX Orin has no input rail, so its module
power is the sum of ``VDD_GPU_SOC``, ``VDD_CPU_CV`` and ``VIN_SYS_5V0``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from medkd.errors import BadInput

_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?=\s|$)")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
TOTAL_RAILS = (("VDD_IN",), ("POM_5V_IN",), ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"))
DEFAULT_INTERVAL_MS = 100


@dataclass(frozen=True)
class Sample:
    """One ``tegrastats`` line: rails as (current, average) mW, RAM in MB, and when it was read."""

    rails: dict[str, tuple[int, int]]
    ram_mb: tuple[int, int] | None
    time: float = 0.0


def parse_line(line: str, when: float = 0.0) -> Sample:
    """The power rails and RAM of one ``tegrastats`` line."""
    rails = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _RAIL.finditer(line)}
    ram = _RAM.search(line)
    return Sample(rails, (int(ram.group(1)), int(ram.group(2))) if ram else None, when)


def total_rails(sample: Sample) -> tuple[str, ...]:
    """The rails whose sum is the board's (or module's) power in ``sample``."""
    for rails in TOTAL_RAILS:
        if all(name in sample.rails for name in rails):
            return rails
    raise BadInput(f"no input power rail among {', '.join(sample.rails) or 'nothing'}; known: {', '.join('+'.join(r) for r in TOTAL_RAILS)}")


def total_power_mw(sample: Sample) -> int:
    """Instantaneous total power of ``sample`` in mW."""
    return sum(sample.rails[name][0] for name in total_rails(sample))


def energy_summary(samples: list[Sample], start: float, stop: float, inferences: int) -> dict[str, Any]:
    """Mean total power over the samples read between ``start`` and ``stop`` and the energy per inference."""
    window = [s for s in samples if start <= s.time <= stop]
    if not window:
        return {"samples": 0, "note": "no tegrastats sample fell in the timed window: raise --iters"}
    rails = total_rails(window[0])
    mean_mw = sum(total_power_mw(s) for s in window) / len(window)
    seconds = stop - start
    return {
        "rails": list(rails),
        "samples": len(window),
        "mean_power_mw": round(mean_mw, 1),
        "energy_per_inference_mj": round(mean_mw * seconds / inferences, 3),
        "window_s": round(seconds, 6),
        "rail_means_mw": {name: round(sum(s.rails[name][0] for s in window) / len(window), 1) for name in window[0].rails},
    }


@dataclass
class TegrastatsMonitor:
    """``tegrastats --interval MS`` in the background; ``samples`` fill while the block runs."""

    interval_ms: int = DEFAULT_INTERVAL_MS
    samples: list[Sample] = field(default_factory=list)

    def __enter__(self) -> TegrastatsMonitor:
        if shutil.which("tegrastats") is None:
            raise BadInput("--power reads tegrastats, which is not on this machine (a Jetson has it in /usr/bin)")
        self.process = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)], stdout=subprocess.PIPE, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.samples.append(parse_line(line, time.perf_counter()))

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.reader.join(timeout=5)
