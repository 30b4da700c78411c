"""Compare two results documents: match entries, ratio of a latency quantile, gate on regressions.

Results are comparable only from the same device (model, cores, GPU, Jetson power mode and clocks)
and, per matched entry, the same settings (threads, warm-up, iterations, inputs, device); anything
else is ``BadInput`` (exit 2), because a ratio between them would mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medkd.bench.device import device_identity
from medkd.bench.schema import QUANTILES, entry_key
from medkd.bench.tables import ms
from medkd.errors import BadInput

METRICS = (*(name for name, _ in QUANTILES), "mean")
PINNED = ("threads", "warmup", "iterations", "inputs", "device")


@dataclass(frozen=True)
class Row:
    """One measurement in either document: its latency in both and their ratio (new / base)."""

    key: tuple[str, ...]
    base_ms: float | None
    new_ms: float | None
    verdict: str  # slower | faster | same | only in base | only in new

    @property
    def ratio(self) -> float | None:
        return None if self.base_ms is None or self.new_ms is None else self.new_ms / self.base_ms


@dataclass(frozen=True)
class Comparison:
    rows: list[Row]
    metric: str
    max_regression: float

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.verdict == "slower"]


def parse_threshold(text: str) -> float:
    """``10%`` or ``0.1`` as the fraction 0.1."""
    value = text.strip()
    try:
        fraction = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise BadInput(f"--max-regression must be a percentage like 10% or a fraction like 0.1, not '{text}'") from None
    if fraction < 0:
        raise BadInput(f"--max-regression must not be negative, not '{text}'")
    return fraction


def _by_key(document: dict[str, Any], label: str) -> dict[tuple[str, ...], dict[str, Any]]:
    entries: dict[tuple[str, ...], dict[str, Any]] = {}
    for entry in document["entries"]:
        key = entry_key(entry)
        if key in entries:
            raise BadInput(f"{label} holds {'/'.join(key)} twice")
        entries[key] = entry
    return entries


def _differences(base: dict[str, Any], new: dict[str, Any], fields: tuple[str, ...] | list[str]) -> list[str]:
    return [f"{name} {base.get(name)!r} vs {new.get(name)!r}" for name in fields if base.get(name) != new.get(name)]


def compare_documents(base: dict[str, Any], new: dict[str, Any], max_regression: float = 0.10, metric: str = "p50") -> Comparison:
    """Row per measurement; ``BadInput`` when the documents come from different devices or settings."""
    if metric not in METRICS:
        raise BadInput(f"--metric must be one of {', '.join(METRICS)}, not '{metric}'")
    base_device, new_device = device_identity(base["device"]), device_identity(new["device"])
    device = _differences(base_device, new_device, list(base_device))
    if device:
        raise BadInput(f"the results come from different devices: {'; '.join(device)}")
    base_entries, new_entries = _by_key(base, "BASE"), _by_key(new, "NEW")
    matched = [key for key in base_entries if key in new_entries]
    if not matched:
        raise BadInput("no measurement of NEW matches one of BASE (model, backend, graph, precision, batch)")
    settings = [f"{'/'.join(key)}: {'; '.join(diff)}" for key in matched if (diff := _differences(base_entries[key], new_entries[key], PINNED))]
    if settings:
        raise BadInput(f"the results were measured with different settings: {' | '.join(settings)}")
    growth = 1 + max_regression
    rows = []
    for key in [*base_entries, *(k for k in new_entries if k not in base_entries)]:
        base_ms = base_entries[key]["latency_ms"][metric] if key in base_entries else None
        new_ms = new_entries[key]["latency_ms"][metric] if key in new_entries else None
        if base_ms is None or new_ms is None:
            verdict = "only in base" if new_ms is None else "only in new"
        elif new_ms > base_ms * growth:
            verdict = "slower"
        elif new_ms * growth < base_ms:
            verdict = "faster"
        else:
            verdict = "same"
        rows.append(Row(key, base_ms, new_ms, verdict))
    return Comparison(rows, metric, max_regression)


def comparison_rows(comparison: Comparison) -> list[list[str]]:
    """Cells under ``comparison_columns`` for every row."""
    return [[*row.key, ms(row.base_ms), ms(row.new_ms), "-" if row.ratio is None else f"{row.ratio:.3f}", row.verdict] for row in comparison.rows]


def comparison_columns(metric: str) -> list[str]:
    return ["model", "backend", "graph", "precision", "batch", f"base {metric} ms", f"new {metric} ms", "new / base", "verdict"]


def software_changes(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Packages whose versions differ between the documents (comparable, but worth knowing)."""
    old, current = base.get("software", {}), new.get("software", {})
    return [f"{name} {old.get(name, '-')} -> {current.get(name, '-')}" for name in sorted(set(old) | set(current)) if old.get(name) != current.get(name)]


def load_notes(document: dict[str, Any], label: str) -> list[str]:
    """A note when ``document`` was measured with more runnable work than the machine has cores."""
    load, cores = document.get("load_average"), (document["device"].get("cpu") or {}).get("logical_cores")
    if not load or not cores or load[0] <= cores:
        return []
    return [f"{label} was measured at load average {load[0]:.1f} on {cores} cores: its times are pessimistic"]
