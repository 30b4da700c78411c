"""Benchmarks: latency, throughput, memory and power of models on every backend, in one results schema.

Typical use::

    from medkd.bench import BenchOptions, bench_model, new_document, device_info
    entries = bench_model("tinyvit-256", BenchOptions(backend="torch", warmup=3, iterations=20, threads=2))
    document = new_document(entries, device_info())

``compare_documents`` gates a new document against a baseline (``medkd bench compare``).
"""

from medkd.bench.compare import Comparison, compare_documents, parse_threshold
from medkd.bench.device import device_identity, device_info, device_slug
from medkd.bench.run import BACKENDS, BenchOptions, bench_document, bench_model
from medkd.bench.schema import (
    BENCH_KIND,
    BENCH_SCHEMA,
    entry_key,
    latency_summary,
    new_document,
    read_document,
    write_document,
)
from medkd.bench.tegrastats import parse_line, total_power_mw

__all__ = [
    "BACKENDS",
    "BENCH_KIND",
    "BENCH_SCHEMA",
    "BenchOptions",
    "Comparison",
    "bench_document",
    "bench_model",
    "compare_documents",
    "device_identity",
    "device_info",
    "device_slug",
    "entry_key",
    "latency_summary",
    "new_document",
    "parse_line",
    "parse_threshold",
    "read_document",
    "total_power_mw",
    "write_document",
]
