"""Teacher against distilled students: test DSC / NSD per dataset, agreement, size, GFLOPs, CPU latency.

    python benchmarks/distill_results.py --teacher runs/stand-in/teacher \
        --student runs/stand-in/litemedsam --student runs/stand-in/sam2unet \
        --data runs/stand-in/teacher/data.jsonl --out benchmarks/results/distill_stand_in.json

Every model is evaluated on the test split with ground-truth box prompts (``--crop`` as the models were
trained); students also against the teacher's masks (agreement). Parameters and encoder GFLOPs come
from ``medkd.zoo.profile_model``; CPU latency is one image and one box prompt end to end (encoder and
decoder, or the U-Net), batch 1, after warm-up, as p50 / p90 / p99. Each student's test DSC is also
given as a fraction of the teacher's (the issue's bar: decoupled >= 0.95, sam2unet >= 0.90).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, read_manifest, software_versions  # noqa: E402
from medkd.data import ArrayCache, RowLoader, default_cache_dir, load_manifest  # noqa: E402
from medkd.evaluation import evaluate  # noqa: E402
from medkd.runtime import Prompts, Segmenter, load_segmenter  # noqa: E402
from medkd.zoo import get_spec, profile_model  # noqa: E402
from medkd.zoo.artifact import artifact_model_ref  # noqa: E402


def latency(segmenter: Segmenter, runs: int, warmup: int) -> dict[str, float]:
    size = segmenter.input_size
    image = torch.zeros(1, 3, size, size)
    prompts = [Prompts(boxes=np.array([[size * 0.25, size * 0.25, size * 0.75, size * 0.75]]))]
    seconds = []
    for run in range(warmup + runs):
        started = time.perf_counter()
        segmenter(image, prompts)
        if run >= warmup:
            seconds.append(time.perf_counter() - started)
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1e3, "p90_ms": cuts[89] * 1e3, "p99_ms": cuts[98] * 1e3, "runs": runs}


def model_of(source: str) -> tuple[str, dict[str, Any], str, str | None]:
    """Zoo name, architecture arguments, runtime and distillation method of an artifact.

    Model artifacts run in PyTorch; export artifacts (``medkd export onnx``) and quantized ones
    (``medkd quantize``) in ONNX Runtime, their architecture read from the export layout."""
    manifest = read_manifest(source)
    if manifest.kind in ("teacher", "student"):
        name, kwargs, _, _ = artifact_model_ref(source)
        return name, kwargs, "PyTorch FP32", manifest.config.get("distill", {}).get("method")
    model = manifest.config["export"]["model"]
    precision = str(manifest.config["export"].get("precision", "fp32")).upper()
    method = None
    for item in manifest.inputs:  # the student an export (or the export a quantized model) was made from
        if item.kind in ("student", "export") and Path(item.path).is_dir():
            method = model_of(item.path)[3]
    return model["name"], dict(model.get("kwargs") or {}), f"ONNX Runtime {precision}", method


def describe(source: str, segmenter: Segmenter, summary: dict[str, Any], runs: int, warmup: int) -> dict[str, Any]:
    name, kwargs, runtime, method = model_of(source)
    return {
        "source": source,
        "kind": read_manifest(source).kind,
        "runtime": runtime,
        "model": {"name": name, "kwargs": kwargs},
        "method": method,
        "profile": profile_model(get_spec(name), **kwargs).to_dict(),
        "cpu_latency": latency(segmenter, runs, warmup),
        "test": summary,
    }


def limited(rows: list, per_dataset: int | None) -> list:
    """The first ``per_dataset`` rows of each dataset (manifest order), all when ``None``."""
    if per_dataset is None:
        return rows
    counts: dict[str, int] = {}
    kept = []
    for row in rows:
        counts[row.dataset] = counts.get(row.dataset, 0) + 1
        if counts[row.dataset] <= per_dataset:
            kept.append(row)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="Teacher artifact directory.")
    parser.add_argument("--student", action="append", required=True, help="Student, export or quantized artifact directory (repeatable).")
    parser.add_argument("--limit", type=int, default=None, help="At most this many test objects per dataset (manifest order).")
    parser.add_argument("--data", type=Path, required=True, help="Data manifest.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--crop", default="box", choices=("none", "box"))
    parser.add_argument("--runs", type=int, default=30, help="Timed runs per model.")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    manifest = load_manifest(args.data)
    rows = limited(manifest.select(args.split), args.limit)
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    teacher = load_segmenter(args.teacher, device="cpu")
    teacher_result = evaluate(teacher, rows, loader, crop=args.crop)
    teacher_dsc = teacher_result.summary["overall"]["dsc"]["mean"]
    results: dict[str, Any] = {
        "kind": "medkd.bench.distill-results",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {"cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()},
        "software": software_versions(),
        "data": {"manifest": str(args.data), "split": args.split, "objects": len(rows), "limit_per_dataset": args.limit, "crop": args.crop, "prompt": "box"},
        "teacher": describe(args.teacher, teacher, teacher_result.summary, args.runs, args.warmup),
        "students": [],
    }
    for source in args.student:
        student = load_segmenter(source, device="cpu")
        summary = evaluate(student, rows, loader, crop=args.crop, teacher=teacher).summary
        entry = describe(source, student, summary, args.runs, args.warmup)
        entry["dsc_fraction_of_teacher"] = summary["overall"]["dsc"]["mean"] / teacher_dsc if teacher_dsc else None
        results["students"].append(entry)
        atomic_write_json(args.out, results)
    atomic_write_json(args.out, results)
    for entry in [results["teacher"], *results["students"]]:
        overall = entry["test"]["overall"]
        fraction = entry.get("dsc_fraction_of_teacher")
        print(
            f"{entry['model']['name']:<18} {entry['method'] or 'teacher':<12} {entry['runtime']:<20} DSC {overall['dsc']['mean']:.4f}"
            f" NSD {overall['nsd']['mean'] if overall['nsd']['mean'] is not None else float('nan'):.4f}"
            + (f" ({fraction:.1%} of teacher)" if fraction else "")
            + f" {entry['profile']['encoder_gflops']:.2f} GFLOPs p50 {entry['cpu_latency']['p50_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
