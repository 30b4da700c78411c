"""Accuracy against latency for every artifact of a run, with a matplotlib plot.

    python benchmarks/accuracy_latency.py runs/stand-in                       # measure what has no latency yet
    python benchmarks/accuracy_latency.py runs/stand-in --no-measure --bench benchmarks/results/end_to_end-....json

Accuracy is read from the run (``medkd eval`` reports in it, quantization reports, manifest
validation summaries; an FP32 export validated against its student inherits the student's).
Latency is read from benchmark results in the run and from ``--bench`` files, matched to artifacts
by manifest id; artifacts without any are measured here, side by side in this process (PyTorch for
model artifacts, ONNX Runtime FP32 / INT8 for exports, AOTInductor, TensorRT), batch 1. Writes the
points and the new measurements as JSON, the plot as PNG beside it, and a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_bytes, atomic_write_json  # noqa: E402
from medkd.bench import BenchOptions, bench_model, device_info, new_document  # noqa: E402
from medkd.bench.suite import results_path  # noqa: E402
from medkd.bench.tables import markdown_table, ms  # noqa: E402
from medkd.report import RunContents, collect_points, scan_run  # noqa: E402
from medkd.report.plot import latency_dsc_png, plottable  # noqa: E402
from medkd.report.points import INTERMEDIATE_KINDS, latencies_of  # noqa: E402
from medkd.report.run import Artifact  # noqa: E402

POINTS_KIND = "medkd.bench.accuracy-latency"
BACKEND_OF_KIND = {"export": "ort", "aoti": "aoti", "engines": "tensorrt"}


def backend_for(artifact: Artifact) -> str | None:
    """How to time an artifact: PyTorch for model weights, ONNX Runtime (INT8 for Q/DQ exports), AOTI, TensorRT."""
    if artifact.manifest.kind in INTERMEDIATE_KINDS or artifact.model_name is None:
        return None
    if "model.pt" in artifact.manifest.files:
        return "torch"
    backend = BACKEND_OF_KIND.get(artifact.manifest.kind)
    if backend == "ort" and artifact.manifest.config.get("export", {}).get("precision") == "int8":
        return "ort-int8"
    return backend


def measure_missing(contents: RunContents, options: BenchOptions, out: Path) -> dict[str, Any] | None:
    """Benchmark every artifact that has no latency yet; the new results document (``None`` if none)."""
    entries = []
    for artifact in contents.artifacts:
        backend = backend_for(artifact)
        if backend is None or latencies_of(artifact, contents.bench):
            continue
        try:
            entries += bench_model(str(artifact.path), dataclasses.replace(options, backend=backend))
        except Exception as exc:  # noqa: BLE001 - one artifact that cannot run here (an engine on a CPU) is reported, the rest go on
            print(f"note: {artifact.name} not measured on {backend}: {exc}", file=sys.stderr)
    if not entries:
        return None
    document = new_document(entries, device_info(), "accuracy_latency")
    contents.bench.append((out, document))
    return document


def table(points: list) -> str:
    headers = ["artifact", "kind", "model", "backend", "precision", "latency ms", "latency from", "DSC", "NSD", "split", "accuracy from"]
    rows = [
        [
            p.artifact,
            p.kind,
            p.model,
            p.backend,
            p.precision,
            ms(p.latency_ms),
            p.latency_source,
            "-" if p.accuracy is None or p.accuracy.dsc is None else f"{p.accuracy.dsc:.4f}",
            "-" if p.accuracy is None or p.accuracy.nsd is None else f"{p.accuracy.nsd:.4f}",
            "-" if p.accuracy is None else p.accuracy.split,
            "-" if p.accuracy is None else p.accuracy.source,
        ]
        for p in points
    ]
    return markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="Run directory (artifacts, eval reports, benchmark results).")
    parser.add_argument("--bench", type=Path, action="append", default=[], help="More benchmark results JSON (repeatable).")
    parser.add_argument("--no-measure", action="store_true", help="Only read latencies; do not measure missing ones.")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="Points JSON (default: benchmarks/results/accuracy_latency-RUN-DATE-DEVICE.json); the plot goes beside it.")
    args = parser.parse_args()

    contents = scan_run(args.run, args.bench)
    device = device_info()
    out = args.out or results_path(ROOT / "benchmarks" / "results", f"accuracy_latency-{args.run.name}", device)
    measured = None if args.no_measure else measure_missing(contents, BenchOptions(warmup=args.warmup, iterations=args.iters, threads=args.threads), out)
    points = collect_points(contents)
    atomic_write_json(
        out,
        {
            "kind": POINTS_KIND,
            "schema": 1,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "run": args.run.name,
            "points": [dataclasses.asdict(p) for p in points],
            "bench": measured,
        },
    )
    print(table(points))
    if plottable(points):
        plot = out.with_suffix(".png")
        atomic_write_bytes(plot, latency_dsc_png(points, f"{args.run.name}: latency against DSC"))
        print(f"wrote {plot}")
    else:
        print("nothing to plot: no artifact has both a latency and a DSC")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
