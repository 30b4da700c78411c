"""Hippocampus volumes per volume: 3D DSC / NSD / HD95 of each model, and one volume end to end.

    python benchmarks/volumes.py --data runs/reference-cpu/data.jsonl \\
        --model "LiteMedSAM zero-shot=litemedsam" --model "teacher=runs/reference-cpu/teacher" \\
        --model "student FP32=runs/reference-cpu/tinyvit-256/export" --model "student INT8=runs/reference-cpu/tinyvit-256/int8"

A model is a zoo name, a model artifact, an export directory (ONNX Runtime, FP32 or INT8) or a
``NAME.medkd`` bundle (``--trust-store``), each ``LABEL=REFERENCE`` or just the reference. Accuracy:
every object (volume and label) of the first ``--volumes`` volumes of the split (by file name), prompted by its ground
truth's 3D box and propagated slice by slice from the box's middle slice (``medkd eval``'s volumetric
scores, :mod:`medkd.evaluation.volumes`), on the volume's own spacing. Time: the split's first volume
end to end as ``medkd segment --box3d`` runs it (read and normalise the file, segment every object,
write the label volume on the source grid), ``--repeats`` times after one warm-up, median and range;
start-up (opening the model) is timed apart, once. Models run one after another on this machine; the
JSON is written after each, and a re-run into the same JSON keeps the models it holds for the same
volumes (a label already there is not measured again).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, software_versions  # noqa: E402
from medkd.bench import device_info  # noqa: E402
from medkd.bench.suite import results_path  # noqa: E402
from medkd.data import ArrayCache, RowLoader, default_cache_dir, load_manifest  # noqa: E402
from medkd.evaluation.volumes import PROMPT, bounding_box3d, evaluate_volumes, volumes_of  # noqa: E402
from medkd.runtime.volume import box3d_prompt, segment_volume  # noqa: E402
from medkd.runtime.volume_files import load_volume, write_volume_outputs  # noqa: E402

DATASET = "hippocampus-mri"


def open_model(reference: str, trust_store: str | None) -> Any:
    """The segmenter of a bundle, an export, a model artifact or a zoo name (PyTorch on the CPU)."""
    if reference.endswith(".medkd"):
        from medkd.bundle import load_bundle_segmenter, trust_policy

        return load_bundle_segmenter(Path(reference), trust_policy(trust_store, False), None)
    from medkd.runtime import load_segmenter

    return load_segmenter(reference, device="cpu")


def end_to_end(segmenter: Any, source: Path, modality: str, boxes: list, out: Path) -> float:
    """Seconds from reading ``source`` to its label volume written at ``out``."""
    start = time.perf_counter()
    volume = load_volume(source, modality)
    prompts = [box3d_prompt(box, len(volume.gray)) for box in boxes]
    result = segment_volume(segmenter, volume.gray, prompts, spacing=volume.spacing)
    write_volume_outputs(result.labels, volume, out, overlay=False)
    return time.perf_counter() - start


def finished_models(out: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The models an earlier run into ``out`` measured on the same volumes (so an interrupted or
    extended run goes on from them); none when it measured other volumes."""
    if not out.is_file():
        return {}
    earlier = json.loads(out.read_text())
    same = all(earlier["data"].get(key) == data[key] for key in ("manifest", "split", "volumes", "timed_volume"))
    return earlier["models"] if same else {}


def table(results: dict[str, Any]) -> Table:
    grid = Table(title=f"{DATASET} {results['data']['split']} split per volume object (3D box prompts, propagated)")
    for header in ("model", "objects", "3D DSC", "NSD 2 mm", "HD95 mm", "start-up s", "volume e2e ms (median)", "range ms"):
        grid.add_column(header, justify="left" if header == "model" else "right")
    for label, entry in results["models"].items():
        overall, timing = entry["summary"]["overall"], entry["end_to_end"]
        grid.add_row(
            label, str(overall["dsc"]["n"]), f"{overall['dsc']['mean']:.4f}", f"{overall['nsd']['mean']:.4f}",
            "-" if overall["hd95"]["mean"] is None else f"{overall['hd95']['mean']:.2f}", f"{entry['startup_s']:.2f}",
            f"{timing['median_ms']:.0f}", f"{timing['min_ms']:.0f}-{timing['max_ms']:.0f}",
        )
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Data manifest (medkd data index) holding hippocampus-mri.")
    parser.add_argument("--model", action="append", required=True, help="LABEL=REFERENCE or REFERENCE (repeatable).")
    parser.add_argument("--split", default="test")
    parser.add_argument("--volumes", type=int, default=0, help="At most this many volumes (manifest order); 0 for all.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed end-to-end runs of one volume, after one warm-up.")
    parser.add_argument("--trust-store", default=None, help="Trust store for bundles.")
    parser.add_argument("--out", type=Path, help="Results JSON (default: benchmarks/results/volumes-DATE-DEVICE.json).")
    args = parser.parse_args()

    device = device_info()
    out = args.out or results_path(ROOT / "benchmarks" / "results", "volumes", device)
    manifest = load_manifest(args.data)
    volumes = volumes_of(manifest.select(args.split, [DATASET]))[: args.volumes or None]
    rows = [row for objects in volumes for rows in objects for row in rows]
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    timed = volumes[0][0][0]
    labels = loader.labels(timed)
    boxes = [bounding_box3d(labels == objects[0].label) for objects in volumes[0]]
    results: dict[str, Any] = {
        "kind": "medkd.bench.volumes",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "software": software_versions(),
        "data": {
            "manifest": str(args.data),
            "dataset": DATASET,
            "split": args.split,
            "volumes": [objects[0][0].image for objects in volumes],
            "objects": sum(map(len, volumes)),
            "prompt": PROMPT,
            "timed_volume": {"image": timed.image, "shape": list(loader.normalized(timed).shape), "objects": len(boxes), "boxes3d": [b.tolist() for b in boxes]},
            "repeats": args.repeats,
        },
        "models": {},
    }
    results["models"] = finished_models(out, results["data"])
    for spec in args.model:
        label, _, reference = spec.rpartition("=")
        label = label or reference
        if label in results["models"]:
            print(f"{label}: already in {out.name}, kept")
            continue
        start = time.perf_counter()
        segmenter = open_model(reference, args.trust_store)
        startup = time.perf_counter() - start
        scores = evaluate_volumes(segmenter, rows, loader, batch=8, progress=False)
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "labels.nii.gz"
            source = manifest.resolve(timed.image)
            end_to_end(segmenter, source, timed.modality, boxes, target)  # warm-up
            seconds = [end_to_end(segmenter, source, timed.modality, boxes, target) for _ in range(args.repeats)]
        results["models"][label] = {
            "reference": reference,
            "name": segmenter.name,
            "runtime": type(segmenter).__name__,
            "preprocessing": segmenter.preprocessing.to_dict(),
            "startup_s": startup,
            "end_to_end": {
                "median_ms": 1000 * statistics.median(seconds),
                "min_ms": 1000 * min(seconds),
                "max_ms": 1000 * max(seconds),
                "runs_ms": [1000 * s for s in seconds],
            },
            "summary": scores.summary,
            "objects": scores.records,
        }
        atomic_write_json(out, results)
        Console(width=160).print(table(results))
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
