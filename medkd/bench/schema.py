"""The benchmark results document: one versioned JSON schema for ``medkd bench``, the suites and CI.

A document holds the device, the software versions and a list of entries; an entry is one graph of one
model on one backend, timed with pinned settings (batch, threads, warm-up, iterations). The schema is
documented in ``docs/bench-schema.md``; readers refuse documents of a newer schema version.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medkd.artifacts import atomic_write_json, software_versions
from medkd.errors import BadInput

BENCH_KIND = "medkd.bench"
BENCH_SCHEMA = 1
QUANTILES = (("p50", 50), ("p90", 90), ("p99", 99))
SETTINGS = ("batch", "threads", "warmup", "iterations", "precision", "inputs")


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 (linear interpolation), mean, min, max and standard deviation in milliseconds."""
    if not seconds:
        raise ValueError("no timed iterations")
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    summary = {name: float(np.percentile(ms, q)) for name, q in QUANTILES}
    summary.update(mean=float(ms.mean()), min=float(ms.min()), max=float(ms.max()), std=float(ms.std()))
    return summary


def entry_key(entry: dict[str, Any]) -> tuple[str, ...]:
    """What makes two entries the same measurement: model, backend, graph, precision and batch."""
    return (entry["model"], entry["backend"], entry["graph"], entry["precision"], str(entry["batch"]))


def new_document(entries: list[dict[str, Any]], device: dict[str, Any], suite: str | None = None, **extra: Any) -> dict[str, Any]:
    """A results document for ``entries`` measured on ``device``."""
    return {
        "kind": BENCH_KIND,
        "schema": BENCH_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "suite": suite,
        "device": device,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "software": software_versions(),
        "entries": entries,
        **extra,
    }


def write_document(path: str | os.PathLike, document: dict[str, Any]) -> None:
    atomic_write_json(path, document)


def read_document(path: str | os.PathLike) -> dict[str, Any]:
    """A results document, validated (``BadInput`` for anything that is not one)."""
    source = Path(path)
    if not source.is_file():
        raise BadInput(f"{source} does not exist")
    try:
        document = json.loads(source.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("kind") != BENCH_KIND:
        raise BadInput(f"{source} is not a medkd benchmark result (kind '{BENCH_KIND}')")
    if not isinstance(document.get("schema"), int) or document["schema"] > BENCH_SCHEMA:
        raise BadInput(f"{source} has benchmark schema {document.get('schema')}; this medkd reads up to {BENCH_SCHEMA}")
    entries = document.get("entries")
    if not isinstance(entries, list) or not isinstance(document.get("device"), dict):
        raise BadInput(f"{source} lacks 'device' or 'entries'")
    for index, entry in enumerate(entries):
        missing = [k for k in ("model", "backend", "graph", "latency_ms", *SETTINGS) if k not in entry]
        if missing:
            raise BadInput(f"{source}: entry {index} lacks {', '.join(missing)}")
    return document
