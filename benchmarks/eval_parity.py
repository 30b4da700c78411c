"""Pair two ``medkd eval`` results of one model on one manifest (say CPU and CUDA, or PyTorch and an
export) object by object: per dataset, both mean DSCs and how far each object's DSC moved.

    python benchmarks/eval_parity.py eval-cpu.json eval-cuda.json --out benchmarks/results/parity.json

Exits 1 when an object's DSC moved more than ``--tolerance`` (default 0.01) or the two results do
not hold the same objects. Prints a markdown table; the JSON holds no paths, only the two runs'
model, device and software.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json  # noqa: E402


def _objects(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {obj["id"]: obj for obj in result["objects"]}


def _run_info(result: dict[str, Any]) -> dict[str, Any]:
    config = result.get("config", {})
    return {
        "model": config.get("model", {}).get("source"),
        "device": config.get("device"),
        "manifest_sha256": config.get("data", {}).get("sha256"),
        "created": result.get("created"),
        "software": result.get("software"),
    }


def parity(first: dict[str, Any], second: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """Per-dataset and overall mean DSC of each run and the per-object absolute DSC change."""
    runs = _run_info(first), _run_info(second)
    if runs[0]["manifest_sha256"] != runs[1]["manifest_sha256"]:
        raise ValueError("the results were measured on different manifests")
    a, b = _objects(first), _objects(second)
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        raise ValueError(f"the results hold different objects ({len(only)} in one only, e.g. {only[0]})")
    groups: dict[str, list[str]] = defaultdict(list)
    for object_id, obj in a.items():
        groups[obj["dataset"]].append(object_id)
    groups["overall"] = list(a)
    rows = []
    for group, ids in groups.items():
        changes = [abs(a[i]["dsc"] - b[i]["dsc"]) for i in ids]
        rows.append(
            {
                "group": group,
                "objects": len(ids),
                "dsc_first": statistics.fmean(a[i]["dsc"] for i in ids),
                "dsc_second": statistics.fmean(b[i]["dsc"] for i in ids),
                "max_abs_change": max(changes),
                "median_abs_change": statistics.median(changes),
                "over_tolerance": sum(change > tolerance for change in changes),
            }
        )
    return {
        "kind": "medkd.eval-parity",
        "tolerance": tolerance,
        "first": runs[0],
        "second": runs[1],
        "groups": rows,
        "passed": all(row["over_tolerance"] == 0 for row in rows),
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| group | objects | DSC first | DSC second | max abs change | median abs change | over tolerance |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["groups"]:
        lines.append(
            f"| {row['group']} | {row['objects']} | {row['dsc_first']:.4f} | {row['dsc_second']:.4f} | "
            f"{row['max_abs_change']:.1e} | {row['median_abs_change']:.1e} | {row['over_tolerance']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="medkd eval JSON")
    parser.add_argument("second", type=Path, help="medkd eval JSON of the same model and manifest")
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest per-object DSC change that passes")
    parser.add_argument("--out", type=Path, help="write the comparison JSON here")
    args = parser.parse_args(argv)
    try:
        report = parity(*(json.loads(path.read_text()) for path in (args.first, args.second)), args.tolerance)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(report))
    if args.out:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
