"""Peak host and device memory of one measured section.

Host: on Linux the kernel's resident-set high-water mark (``VmHWM``) is reset for the process before
the section (``/proc/self/clear_refs``, value 5) and read after it, which gives the exact peak of the
section; elsewhere ``ru_maxrss`` (the process's peak since it started) is all there is, and the result
says which it is. Device: ``torch.cuda.max_memory_allocated`` after resetting the peak statistics
(memory allocated through PyTorch only).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any

from medkd.accelerator import torch_cuda

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.result()``: MiB before, at peak, and the method."""

    def __enter__(self) -> PeakMemory:
        self.cuda = torch_cuda()
        if self.cuda is not None:
            self.cuda.synchronize()
            self.cuda.reset_peak_memory_stats()
            self.device_before = self.cuda.memory_allocated()
        self.rss_before = _status_kib("VmRSS")
        self.exact = self.rss_before is not None and _reset_high_water_mark()
        self.maxrss_before = _maxrss_kib()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_kib = _status_kib("VmHWM") if self.exact else _maxrss_kib()
        self.device_peak = self.cuda.max_memory_allocated() if self.cuda is not None else None

    def result(self) -> dict[str, Any]:
        before = self.rss_before if self.rss_before is not None else self.maxrss_before
        return {
            "host_rss_before_mib": round(before / 1024, 1),
            "host_peak_rss_mib": round(self.peak_kib / 1024, 1),
            "host_peak_increase_mib": round(max(self.peak_kib - before, 0) / 1024, 1),
            "host_method": "VmHWM reset for the section" if self.exact else "ru_maxrss since process start",
            "device_peak_mib": None if self.device_peak is None else round(self.device_peak / (1 << 20), 1),
            "device_peak_increase_mib": None if self.device_peak is None else round((self.device_peak - self.device_before) / (1 << 20), 1),
        }
