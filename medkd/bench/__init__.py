"""Benchmarks: latency, throughput, memory and power of models on every backend, in one results schema.

Typical use::

    from medkd.bench import BenchOptions, bench_model, new_document, device_info
    entries = bench_model("tinyvit-256", BenchOptions(backend="torch", warmup=3, iterations=20, threads=2))
    document = new_document(entries, device_info())

``compare_documents`` gates a new document against a baseline (``medkd bench compare``). The names
below are imported on first use: timing an ONNX model or a bundle needs no torch.
"""

from medkd.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "Comparison": "medkd.bench.compare",
        "compare_documents": "medkd.bench.compare",
        "parse_threshold": "medkd.bench.compare",
        "device_identity": "medkd.bench.device",
        "device_info": "medkd.bench.device",
        "device_slug": "medkd.bench.device",
        "BACKENDS": "medkd.bench.run",
        "BenchOptions": "medkd.bench.run",
        "bench_document": "medkd.bench.run",
        "bench_model": "medkd.bench.run",
        "BENCH_KIND": "medkd.bench.schema",
        "BENCH_SCHEMA": "medkd.bench.schema",
        "entry_key": "medkd.bench.schema",
        "latency_summary": "medkd.bench.schema",
        "new_document": "medkd.bench.schema",
        "read_document": "medkd.bench.schema",
        "write_document": "medkd.bench.schema",
        "parse_line": "medkd.bench.tegrastats",
        "total_power_mw": "medkd.bench.tegrastats",
    },
)
