"""Time indexing plus preprocessing of all the real data at 256 and 1024 px, on the CPU.

    python benchmarks/data_prep.py                      # ../shared/data (or $MEDKD_DATA)
    python benchmarks/data_prep.py --sizes 256 --quick  # first 50 images per dataset

For each input size, with a fresh (cold) preprocessing cache: every 2D image or volume slice of the
manifest is decoded, MedSAM-normalised (cached), resized, padded and normalised into the model input,
and its label map is mapped into model space; then the same again with the cache warm (a new loader,
so only the on-disk cache helps). Writes ``benchmarks/results/data_prep.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, software_versions  # noqa: E402
from medkd.data import ArrayCache, RowLoader, build_manifest, plan_geometry  # noqa: E402
from medkd.data.manifest import DataManifest, ManifestRow  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "data_prep.json"


def _quantiles(seconds: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1e3, "p90_ms": cuts[89] * 1e3, "p99_ms": cuts[98] * 1e3}


def _images(manifest: DataManifest, quick: bool) -> list[ManifestRow]:
    """One row per 2D image or slice (the first object on it)."""
    first: dict[tuple, ManifestRow] = {}
    for row in manifest.rows:
        first.setdefault((row.dataset, *row.image_key), row)
    rows = list(first.values())
    if quick:
        rows = [r for d in manifest.datasets for r in [x for x in rows if x.dataset == d][:50]]
    return rows


def _shapes(rows: list[ManifestRow]) -> dict[str, Any]:
    """How many distinct (H, W) a dataset has, and its smallest and largest by area."""
    shapes = sorted({(r.height, r.width) for r in rows}, key=lambda hw: (hw[0] * hw[1], hw))
    return {"distinct": len(shapes), "smallest": "x".join(map(str, shapes[0])), "largest": "x".join(map(str, shapes[-1]))}


def _preprocess(manifest: DataManifest, rows: list[ManifestRow], size: int, cache_dir: Path) -> dict[str, Any]:
    loader = RowLoader(manifest, ArrayCache(cache_dir))
    latencies = []
    start = time.perf_counter()
    for row in rows:
        begin = time.perf_counter()
        image = loader.image(row)
        geometry = plan_geometry(image.shape[:2], size)
        geometry.image_to_model(image)
        geometry.mask_to_model(loader.label_map(row))
        latencies.append(time.perf_counter() - begin)
    total = time.perf_counter() - start
    return {"seconds": total, "images_per_s": len(rows) / total, **_quantiles(latencies)}


def run(data: Path, sizes: list[int], quick: bool) -> dict[str, Any]:
    start = time.perf_counter()
    manifest = build_manifest(data, progress=False)
    index_seconds = time.perf_counter() - start
    rows = _images(manifest, quick)
    results: dict[str, Any] = {
        "benchmark": "data_prep",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {"kind": "cpu", "processor": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "software": software_versions(),
        "precision": "uint8 cache, float32 model input",
        "quick": quick,
        "data": {
            "datasets": sorted(manifest.datasets),
            "objects": len(manifest.rows),
            "images_or_slices": len(rows),
            "image_shapes": {dataset: _shapes([r for r in rows if r.dataset == dataset]) for dataset in manifest.datasets},
        },
        "index_seconds": index_seconds,
        "sizes": {},
    }
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="medkd-bench-cache-") as cache:
            cold = _preprocess(manifest, rows, size, Path(cache))
            warm = _preprocess(manifest, rows, size, Path(cache))
        results["sizes"][str(size)] = {
            "shape": [3, size, size],
            "cold_cache": cold,
            "warm_cache": warm,
            "index_plus_preprocess_seconds": index_seconds + cold["seconds"],
        }
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MEDKD_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--quick", action="store_true", help="At most 50 images per dataset.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    results = run(args.data, args.sizes, args.quick)
    atomic_write_json(args.out, results)
    print(f"index: {results['index_seconds']:.1f} s, {results['data']['objects']} objects on {results['data']['images_or_slices']} images/slices")
    print("| size | index + preprocess (s) | cold p50 / p99 ms | warm (s) | warm p50 / p99 ms |")
    print("|---|---|---|---|---|")
    for size, entry in results["sizes"].items():
        cold, warm = entry["cold_cache"], entry["warm_cache"]
        print(
            f"| {size} | {entry['index_plus_preprocess_seconds']:.1f} | {cold['p50_ms']:.1f} / {cold['p99_ms']:.1f} "
            f"| {warm['seconds']:.1f} | {warm['p50_ms']:.1f} / {warm['p99_ms']:.1f} |"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
