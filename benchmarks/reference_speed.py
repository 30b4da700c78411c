"""Encoders of a finished reference run side by side in one process: the shipped teacher (LiteMedSAM
adapted) and every student, FP32 and INT8, in ONNX Runtime as medkd's runtime loads them, timed in
interleaved rounds so that the machine's noise falls on all of them alike.

    python benchmarks/reference_speed.py runs/reference-cpu              # table + JSON under benchmarks/results/
    python benchmarks/reference_speed.py runs/reference-cpu --rounds 30

Each round runs every model's encoder once on the same batch-1 input (a U-Net, which has no separate
encoder, runs whole); the figures are medians over rounds. Speed-ups are against the teacher's FP32
export, and each INT8 model against its own FP32 export.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, software_versions  # noqa: E402
from medkd.bench import device_info  # noqa: E402
from medkd.bench.suite import results_path  # noqa: E402
from medkd.bench.tables import markdown_table  # noqa: E402
from medkd.runtime.exported import ExportedSegmenter, open_exported  # noqa: E402

KIND = "medkd.bench.reference-speed"
REFERENCE = "teacher-export"


def deployables(run: Path) -> dict[str, Path]:
    """``<model>-export`` / ``<model>-int8`` -> folder, the teacher first, for every exported model of the run."""
    folders = {"teacher": run / "teacher-deploy"}
    exported = (path.parent.parent for path in sorted(run.glob("*/export/manifest.json")))
    folders |= {folder.name: folder for folder in exported if folder.name != "teacher-deploy"}
    found = {}
    for model, folder in folders.items():
        for kind in ("export", "int8"):
            if (folder / kind / "manifest.json").is_file():
                found[f"{model}-{kind}"] = folder / kind
    return found


def encoder_call(segmenter: ExportedSegmenter) -> tuple[str, Callable[[], Any]]:
    """The graph timed and a call that runs it once on a fixed batch-1 input."""
    size = segmenter.input_size
    rng = np.random.default_rng(0)
    if segmenter.family == "unet":
        inputs = rng.standard_normal((1, 4, size, size), dtype=np.float32)
        return "unet", lambda: segmenter.unet(inputs)
    images = rng.standard_normal((1, 3, size, size), dtype=np.float32)
    return "encoder", lambda: segmenter.encode(images)


def measure(calls: dict[str, Callable[[], Any]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call of each model, interleaved: every round runs every model once."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(rounds):
        for label, call in calls.items():
            started = time.perf_counter()
            call()
            times[label].append(1000 * (time.perf_counter() - started))
    return times


def summarize(times: dict[str, list[float]], graphs: dict[str, str], names: dict[str, str]) -> list[dict[str, Any]]:
    medians = {label: statistics.median(values) for label, values in times.items()}
    entries = []
    for label, values in times.items():
        own_fp32 = label.removesuffix("-int8") + "-export"
        entries.append(
            {
                "label": label,
                "model": names[label],
                "graph": graphs[label],
                "precision": "int8" if label.endswith("-int8") else "fp32",
                "p50_ms": round(medians[label], 2),
                "p90_ms": round(float(np.percentile(values, 90)), 2),
                "speedup_vs_teacher_fp32": round(medians[REFERENCE] / medians[label], 2) if REFERENCE in medians else None,
                "int8_speedup_vs_own_fp32": round(medians[own_fp32] / medians[label], 2) if label.endswith("-int8") and own_fp32 in medians else None,
            }
        )
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="A finished run directory (medkd pipeline --out).")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, help="JSON to write (default: benchmarks/results/reference-speed-<date>-<device>.json).")
    args = parser.parse_args()
    found = deployables(args.run)
    if REFERENCE not in found:
        raise SystemExit(f"error: {args.run} has no teacher export (teacher-deploy/export): run the pipeline with ship_teacher")
    calls, graphs, names = {}, {}, {}
    for label, folder in found.items():
        segmenter = open_exported(folder)
        graphs[label], calls[label] = encoder_call(segmenter)
        names[label] = segmenter.name
    times = measure(calls, args.rounds, args.warmup)
    entries = summarize(times, graphs, names)
    device = device_info()
    results = {
        "kind": KIND,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run": args.run.name,
        "device": device,
        "software": software_versions(),
        "rounds": args.rounds,
        "warmup": args.warmup,
        "batch": 1,
        "entries": entries,
    }
    out = args.out or results_path(ROOT / "benchmarks" / "results", "reference-speed", device)
    atomic_write_json(out, results)
    rows = [
        [e["label"], e["graph"], e["precision"], f"{e['p50_ms']:.1f}", f"{e['p90_ms']:.1f}", f"{e['speedup_vs_teacher_fp32']:.2f}x", "-" if e["int8_speedup_vs_own_fp32"] is None else f"{e['int8_speedup_vs_own_fp32']:.2f}x"]
        for e in entries
    ]
    print(markdown_table(["model", "graph", "precision", "p50 ms", "p90 ms", "vs teacher FP32", "INT8 vs own FP32"], rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
