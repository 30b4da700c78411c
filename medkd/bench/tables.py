"""Results as tables: rich for the terminal, markdown for suites and CI job summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

ENTRY_COLUMNS = (
    "model",
    "backend",
    "graph",
    "precision",
    "batch",
    "threads",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean ms",
    "per s",
    "peak RSS MiB",
    "device MiB",
    "mJ / inference",
)


def is_numeric(column: str) -> bool:
    """Whether a column of ``ENTRY_COLUMNS`` (and tables built on it) holds numbers (right-aligned)."""
    return column.endswith(("ms", "MiB", "per s", "inference")) or column in ("batch", "threads")


def ms(value: float | None) -> str:
    """Milliseconds with three significant decimals below 10 ms, one above; '-' for nothing."""
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def entry_cells(entry: dict[str, Any]) -> list[str]:
    """One results entry as the cells of ``ENTRY_COLUMNS``."""
    latency, memory, power = entry["latency_ms"], entry.get("memory") or {}, entry.get("power") or {}
    device_mib = memory.get("device_peak_mib")
    energy = power.get("energy_per_inference_mj")
    return [
        entry["model"],
        entry["backend"],
        entry["graph"],
        entry["precision"],
        str(entry["batch"]),
        str(entry["threads"]),
        *(ms(latency[q]) for q in ("p50", "p90", "p99", "mean")),
        f"{entry['throughput_per_s']:.2f}",
        "-" if memory.get("host_peak_rss_mib") is None else f"{memory['host_peak_rss_mib']:.0f}",
        "-" if device_mib is None else f"{device_mib:.0f}",
        "-" if energy is None else f"{energy:.1f}",
    ]


def entries_table(entries: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ENTRY_COLUMNS:
        table.add_column(column, justify="right" if is_numeric(column) else "left")
    for entry in entries:
        table.add_row(*entry_cells(entry))
    return table


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
