"""The quantization report as rich tables: accuracy and speed against FP32, and what stayed in float."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(factor: float, more: str, less: str) -> str:
    return f"{factor:.2f}x {more}" if factor >= 1.0 else f"{1.0 / factor:.2f}x {less}"


def summary_table(report: dict[str, Any]) -> Table:
    """DSC / NSD per split, output errors, sizes and latency of each graph, FP32 against quantized."""
    precision = report["precision"]
    table = Table(title=f"{precision.upper()} against FP32 (ONNX Runtime, CPU, {report['latency']['threads']} threads)")
    for header in ("measure", "FP32", precision.upper(), "change"):
        table.add_column(header, justify="left" if header == "measure" else "right")
    for split, accuracy in report["accuracy"].items():
        for metric in ("dsc", "nsd"):
            before, after = accuracy["fp32"][metric], accuracy[precision][metric]
            change = None if before is None or after is None else after - before
            table.add_row(f"{split} {metric.upper()} ({accuracy['objects']} objects)", _number(before), _number(after), _number(change))
    for graph, error in report["output_rel_error"]["test"].items():
        table.add_row(f"{graph} output rel. error (test)", "", _number(error), "")
    for graph, sizes in report["size_bytes"].items():
        table.add_row(f"{graph} size (MiB)", _number(sizes["fp32"] / 2**20, 2), _number(sizes[precision] / 2**20, 2), _ratio(sizes["fp32"] / sizes[precision], "smaller", "larger"))
    for graph, timing in report["latency"].items():
        if isinstance(timing, dict):
            table.add_row(f"{graph} latency p50 (ms)", _number(timing["fp32"]["p50_ms"], 2), _number(timing[precision]["p50_ms"], 2), _ratio(timing["speedup_p50"], "faster", "slower"))
    return table


def float_table(report: dict[str, Any]) -> Table | None:
    """Blocks kept in float and why (``None`` when every candidate block was quantized)."""
    kept = report.get("kept_in_float") or []
    if not kept:
        return None
    table = Table(title="kept in float")
    for header in ("graph", "block", "reason", "mask change alone", "DSC drop alone", "output error alone"):
        table.add_column(header)
    unfused: dict[str, list[dict[str, Any]]] = {}
    for entry in kept:
        if "node" in entry:  # one node left float for ONNX Runtime: summarised per graph below
            unfused.setdefault(entry["graph"], []).append(entry)
            continue
        alone = (entry.get(f"{measure}_alone") for measure in ("mask_change", "dsc_drop", "output_error"))
        table.add_row(entry["graph"], entry["block"], entry["reason"], *(_number(value) for value in alone))
    for graph, entries in unfused.items():
        blocks = len({e["block"] for e in entries})
        table.add_row(graph, f"{len(entries)} nodes in {blocks} blocks", entries[0]["reason"], "", "", "")
    return table
