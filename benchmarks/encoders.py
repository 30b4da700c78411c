"""Image encoders side by side in one process: SAM ViT-H / L / B teachers against the students, with
each one's speed-up over ``sam-vit-h`` in PyTorch FP32.

    python benchmarks/encoders.py                                   # all six, torch FP32 + ORT FP32 (students)
    python benchmarks/encoders.py --int8 tinyvit=runs/quant/tinyvit # + ONNX Runtime INT8 (Q/DQ from medkd quantize)
    python benchmarks/encoders.py --models tinyvit-256 unet --quick # seconds

Every model is built with random weights (latency does not depend on them) and timed with
``medkd.bench`` in the results schema: PyTorch FP32 (``--device``), ONNX Runtime FP32 on an export made
once under ``--exports`` (students; ``--ort-teachers`` for the teachers too, ViT-H's ONNX is 2.5 GB),
ONNX Runtime INT8 for the ``--int8 NAME=ONNX_OR_ARTIFACT`` given, and TensorRT engines built from
the exports with ``--tensorrt PRECISION`` (a GPU with TensorRT). The encoder is one image (batch 1);
a U-Net has no separate encoder and is timed whole. The big teachers get 1 warm-up and 3 timed
iterations (ViT-H takes about a minute per image on a 2-core CPU), students 3 and 20. The JSON is
rewritten after every model; a markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.bench import BenchOptions, bench_model, device_info, new_document, write_document  # noqa: E402
from medkd.bench.suite import DEFAULT_EXPORTS, ensure_export, find_entry, results_path, validation_manifest  # noqa: E402
from medkd.bench.tables import markdown_table, ms  # noqa: E402
from medkd.zoo import get_spec  # noqa: E402

MODELS = ("sam-vit-h", "sam-vit-l", "sam-vit-b", "tinyvit", "tinyvit-256", "unet")
REFERENCE = ("sam-vit-h", "torch")
TARGET = ("tinyvit", "ort-int8", 100.0)  # the deployable student at least 100x faster than ViT-H in PyTorch


def _graph(model: str) -> tuple[str, ...]:
    return ("unet",) if get_spec(model).family == "unet" else ("encoder",)


def _settings(model: str, args: argparse.Namespace) -> tuple[int, int]:
    if args.quick:
        return 1, 2
    return (args.teacher_warmup, args.teacher_iters) if get_spec(model).role == "teacher" else (args.student_warmup, args.student_iters)


def _int8_sources(values: list[str]) -> dict[str, str]:
    sources = {}
    for value in values:
        model, sep, path = value.partition("=")
        if not sep or not Path(path).exists():
            raise SystemExit(f"error: --int8 must be NAME=FILE.onnx or NAME=ARTIFACT that exists, not '{value}'")
        sources[model] = path
    return sources


def plan(args: argparse.Namespace) -> list[tuple[str, str, Any]]:
    """(model, backend, how to get the source) in the order they run."""
    int8 = _int8_sources(args.int8)
    steps: list[tuple[str, str, Any]] = []
    for model in args.models:
        steps.append((model, "torch", model))
        if "ort" not in args.skip and (get_spec(model).role == "student" or args.ort_teachers):
            steps.append((model, "ort", "export"))
        if model in int8:
            steps.append((model, "ort-int8", int8[model]))
        if args.tensorrt:
            steps.append((model, "tensorrt", "engines"))
    return steps


def _source(model: str, how: str, args: argparse.Namespace) -> str:
    if how not in ("export", "engines"):
        return how
    export = ensure_export(model, args.exports, validation_manifest(args.exports, args.data))
    if how == "export":
        return str(export)
    from medkd.export.engines import build_engines
    from medkd.export.trt_profiles import EngineOptions

    engines = export / f"tensorrt-{args.tensorrt}"
    if not (engines / "manifest.json").is_file():
        build_engines(export, engines, EngineOptions(args.tensorrt, timing_cache=args.exports / "timing.cache"), {})
    return str(engines)


def ratios(entries: list[dict[str, Any]]) -> tuple[str, dict[int, float]]:
    """Speed-up of every entry over the reference (sam-vit-h in PyTorch, else the first PyTorch entry)."""
    reference = find_entry(entries, *REFERENCE) or next((e for e in entries if e["backend"] == "torch"), None)
    if reference is None:
        return "-", {}
    label = f"{reference['model']} {reference['backend']} {reference['precision']}"
    return label, {i: reference["latency_ms"]["p50"] / e["latency_ms"]["p50"] for i, e in enumerate(entries)}


def table(entries: list[dict[str, Any]]) -> str:
    label, speedups = ratios(entries)
    rows = [
        [
            e["model"],
            get_spec(e["model"]).role,
            e["backend"],
            e["precision"],
            "x".join(map(str, next(iter(e["inputs"].values())))),
            f"{e['warmup']}+{e['iterations']}",
            ms(e["latency_ms"]["p50"]),
            ms(e["latency_ms"]["p90"]),
            ms(e["latency_ms"]["p99"]),
            f"{e['throughput_per_s']:.2f}",
            f"{e['memory']['host_peak_rss_mib']:.0f}",
            f"{speedups[i]:.1f}x" if i in speedups else "-",
        ]
        for i, e in enumerate(entries)
    ]
    headers = ["model", "role", "backend", "precision", "input", "warm-up+iters", "p50 ms", "p90 ms", "p99 ms", "images/s", "peak RSS MiB", f"vs {label}"]
    return markdown_table(headers, rows)


def target_line(entries: list[dict[str, Any]]) -> str:
    model, backend, least = TARGET
    reference, student = find_entry(entries, *REFERENCE), find_entry(entries, model, backend)
    if reference is None:
        return f"target: needs {REFERENCE[0]} in {REFERENCE[1]} as the reference"
    if student is None:
        available = [f"{e['model']} {e['backend']}" for e in entries if e["model"] == model]
        return f"target: {model} {backend} not measured (pass --int8 {model}=FILE.onnx); measured for {model}: {', '.join(available) or 'nothing'}"
    speedup = reference["latency_ms"]["p50"] / student["latency_ms"]["p50"]
    verdict = "met" if speedup >= least else "missed"
    return f"target: {model} {backend} is {speedup:.1f}x faster than {REFERENCE[0]} {REFERENCE[1]} FP32 (at least {least:.0f}x: {verdict})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="Zoo names, in running order.")
    parser.add_argument("--int8", action="append", default=[], help="NAME=FILE.onnx or NAME=ARTIFACT: an INT8 Q/DQ encoder for NAME.")
    parser.add_argument("--ort-teachers", action="store_true", help="Export and time the teachers in ONNX Runtime too.")
    parser.add_argument("--skip", nargs="*", default=[], choices=("ort",), help="Backends to leave out.")
    parser.add_argument("--tensorrt", choices=("fp32", "fp16"), help="Also build TensorRT engines of this precision from the exports and time them.")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all usable cores).")
    parser.add_argument("--device", default="auto", help="PyTorch device: auto, cpu or cuda.")
    parser.add_argument("--teacher-warmup", type=int, default=1)
    parser.add_argument("--teacher-iters", type=int, default=3)
    parser.add_argument("--student-warmup", type=int, default=3)
    parser.add_argument("--student-iters", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="1 warm-up and 2 iterations for every model (tests, smoke runs).")
    parser.add_argument("--exports", type=Path, default=DEFAULT_EXPORTS, help="Where the ONNX exports are made once and reused.")
    parser.add_argument("--data", type=Path, help="Data manifest whose images validate the exports (default: the real CT slices).")
    parser.add_argument("--out", type=Path, help="Results JSON (default: benchmarks/results/encoders-DATE-DEVICE.json).")
    args = parser.parse_args()

    threads = args.threads or len(os.sched_getaffinity(0))
    device = device_info()
    out = args.out or results_path(ROOT / "benchmarks" / "results", "encoders", device)
    entries: list[dict[str, Any]] = []
    for model, backend, how in plan(args):
        warmup, iterations = _settings(model, args)
        options = BenchOptions(backend, 1, warmup, iterations, threads, _graph(model), args.device)
        entries += bench_model(_source(model, how, args), options)
        gc.collect()
        label, speedups = ratios(entries)
        summary = {"reference": label, "speedup_p50": {f"{e['model']}/{e['backend']}/{e['precision']}": speedups.get(i) for i, e in enumerate(entries)}}
        write_document(out, new_document(entries, device, "encoders", summary=summary))
    print(table(entries))
    print(target_line(entries))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
