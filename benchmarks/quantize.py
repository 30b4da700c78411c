"""INT8 post-training quantization, FP32 against INT8 side by side in ONNX Runtime on this CPU.

    python benchmarks/quantize.py --data runs/reference-cpu/data.jsonl \
        --student runs/reference-cpu/litemedsam/student --teacher runs/reference-cpu/teacher --crop box

Each case is exported (``medkd export onnx``) and quantized with ``medkd quantize``'s recipe (symmetric
int8 Q/DQ, per-channel weights; MatMul / Gemm with constant weights, dense convolutions but the image
stem, depthwise ones inside convolution blocks; LayerNorm / Softmax / GELU and attention products in
float), and both graphs run as ``medkd`` runs them (``cpu_session``: Q/DQ graphs lowered for ONNX
Runtime's x86 integer kernels, :mod:`medkd.runtime.cpu_lowering`); trained models (``--student``, ``--teacher``) with the DSC gate. Zoo models with random weights
(``tinyvit-256``, ``tinyvit`` at 1024 px, ``sam-vit-b``) give the speed and embedding-error mechanics
only: their DSC means nothing. For reference each case also records ONNX Runtime's ``quantize_static``
defaults (all operators, asymmetric uint8 activations: what TensorRT cannot take). Encoder latency is
p50 of interleaved FP32 / INT8 runs (2 threads). The issue's bar: INT8 encoder >= 1.5x faster than
FP32, test DSC at most 1 point below FP32. Results: ``benchmarks/results/quantize-<date>-cpu.json``,
written after every case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.runtime.onnx_runtime import cpu_session  # noqa: E402
from medkd.quantize.calibration import FeedReader  # noqa: E402
from medkd.quantize.measure import graph_outputs, output_error, side_by_side_latency  # noqa: E402

from medkd.artifacts import atomic_write_json, read_manifest, software_versions  # noqa: E402
from medkd.bench.device import device_info  # noqa: E402

ZOO_CASES = ("tinyvit-256", "tinyvit", "sam-vit-b")
SPEEDUP_BAR = 1.5
DSC_DROP_BAR = 0.01


def ort_defaults(encoder: Path, feeds: list[dict], test_feeds: list[dict], threads: int, runs: int, scratch: Path) -> dict[str, Any]:
    """``quantize_static`` with its defaults, measured the same way (reference: asymmetric)."""
    from onnxruntime.quantization import quantize_static

    target = scratch / "encoder.ort-defaults.onnx"
    quantize_static(encoder, target, FeedReader(feeds))
    latency = side_by_side_latency({"fp32": encoder, "int8": target}, test_feeds[0], threads, runs)
    error = output_error(graph_outputs(cpu_session(encoder), "image_embeddings", test_feeds), cpu_session(target), "image_embeddings", test_feeds)
    return {"embedding_rel_error_test": error, "latency": latency, "speedup_p50": latency["fp32"]["p50_ms"] / latency["int8"]["p50_ms"]}


def medkd(argv: list[str]) -> None:
    """Run one ``medkd`` command in a fresh process; its error (last line) ends the case."""
    done = subprocess.run([sys.executable, "-m", "medkd", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"medkd {argv[0]} exited {done.returncode}: {lines[-1] if lines else ''}")


def run_case(label: str, source: str, trained: bool, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    export_dir, quant_dir = work / label / "export", work / label / "quant"
    started = time.perf_counter()
    # Each stage in its own process: a 1024-px ViT-B leaves GiBs behind in a long-lived one.
    medkd(["export", "onnx", source, "--out", str(export_dir), "--data", str(args.data), "--validate-samples", "1"])
    quantize = [
        "quantize",
        str(export_dir),
        "--out",
        str(quant_dir),
        "--calib",
        str(args.data),
        "--method",
        args.method,
        "--samples",
        str(args.samples if trained else min(args.samples, 8)),
        "--crop",
        args.crop if trained else "none",
        "--gate-samples",
        str(args.gate_samples if trained else 2),
        "--test-samples",
        str(args.test_samples if trained else 2),
        "--threads",
        str(args.threads),
        "--latency-runs",
        str(args.runs),
    ]
    medkd(quantize + (["--max-dsc-drop", str(DSC_DROP_BAR)] if trained else []))
    report = read_manifest(quant_dir).metrics["quantization"]
    speedup = report["latency"]["encoder"]["speedup_p50"]
    result: dict[str, Any] = {
        "source": source,
        "weights": "trained" if trained else "random (speed and error mechanics only)",
        "encoder_latency_ms": {k: report["latency"]["encoder"][k] for k in ("fp32", "int8")},
        "encoder_speedup_p50": speedup,
        "embedding_rel_error": {split: errors["encoder"] for split, errors in report["output_rel_error"].items()},
        "accuracy": report["accuracy"],
        "size_bytes": report["size_bytes"],
        "kept_in_float": report["kept_in_float"],
        "gate": report.get("gate"),
        "decoder_latency_ms": report["latency"].get("decoder"),
        "meets_speed_bar": speedup >= SPEEDUP_BAR,
    }
    if trained:
        result["meets_dsc_bar"] = report["accuracy"]["test"]["dsc_drop"] <= DSC_DROP_BAR
    if args.ort_defaults:
        with tempfile.TemporaryDirectory() as scratch:
            encoder = export_dir / "encoder.onnx"
            feeds = _image_feeds(export_dir, args, 4)  # defaults calibrate every tensor: keep it to a few images
            result["ort_defaults_reference"] = ort_defaults(encoder, feeds[:2], feeds[2:], args.threads, args.runs, Path(scratch))
    result["seconds"] = time.perf_counter() - started
    if not args.keep:
        shutil.rmtree(work / label, ignore_errors=True)
    return result


def _image_feeds(export_dir: Path, args: argparse.Namespace, count: int) -> list[dict]:
    from medkd.runtime.layout import read_layout
    from medkd.quantize.calibration import model_inputs, spread_rows

    from medkd.data import ArrayCache, RowLoader, default_cache_dir, load_manifest

    manifest = load_manifest(args.data)
    size = int(read_layout(export_dir)["preprocessing"]["input_size"])
    images, _ = model_inputs(spread_rows(manifest, count, "train"), RowLoader(manifest, ArrayCache(default_cache_dir())), size)
    return [{"image": image} for image in images]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="data manifest (medkd data index ../shared/data)")
    parser.add_argument("--student", action="append", default=[], help="trained student artifact (repeatable)")
    parser.add_argument("--teacher", action="append", default=[], help="trained teacher artifact, quantized like a student")
    parser.add_argument("--zoo", nargs="*", default=list(ZOO_CASES), help="zoo models with random weights")
    parser.add_argument("--crop", default="box", help="preprocessing of the trained models")
    parser.add_argument("--method", default="minmax")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--gate-samples", type=int, default=24)
    parser.add_argument("--test-samples", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-ort-defaults", dest="ort_defaults", action="store_false")
    parser.add_argument("--keep", action="store_true", help="keep the exports and quantized artifacts")
    parser.add_argument("--work", type=Path, default=None, help="where exports go (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"quantize-{dt.date.today().isoformat()}-cpu.json")
    args = parser.parse_args()
    cases = [(Path(s).name, s, True) for s in args.student + args.teacher] + [(name, name, False) for name in args.zoo]
    document: dict[str, Any] = {
        "benchmark": "quantize",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_info(),
        "software": software_versions(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "work", "data", "keep")},
        "bar": {"encoder_speedup_p50": SPEEDUP_BAR, "test_dsc_drop": DSC_DROP_BAR},
        "cases": {},
    }
    work = args.work or Path(tempfile.mkdtemp(prefix="medkd-quantize-bench-"))
    for label, source, trained in cases:
        print(f"== {label}", flush=True)
        try:
            document["cases"][label] = run_case(label, source, trained, args, work)
        except Exception as exc:  # noqa: BLE001 - record the failure and go on with the next case
            document["cases"][label] = {"source": source, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        print(document["cases"][label].get("encoder_speedup_p50", document["cases"][label].get("error")), flush=True)
        atomic_write_json(args.out, document)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
