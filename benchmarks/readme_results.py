"""The README's results tables, generated from results JSON of ``benchmarks/reference_results.py``,
``benchmarks/reference_speed.py``, ``benchmarks/adapt_methods.py``, ``benchmarks/federated.py``,
``benchmarks/litemedsam_zero_shot.py`` and ``benchmarks/volumes.py``.

    python benchmarks/readme_results.py            # rewrite the table in README.md from the JSON it names
    python benchmarks/readme_results.py --check    # exit 1 if README.md differs from the JSON

The table sits between ``<!-- results: PATH -->`` and ``<!-- results end -->`` in README.md; PATH (relative
to the repository) is the JSON it is made from, so the README can never show numbers that no run
produced.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- results: (?P<path>\S+) -->\n)(?P<table>.*?)(<!-- results end -->)", re.S)


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


ZERO_SHOT_KIND = "medkd.bench.litemedsam-zero-shot"
VARIANT_TITLES = {"whole": "whole image", "box-crop": "box crops", "cvpr24": "CVPR24 preprocessing"}


def zero_shot_table(results: dict[str, Any]) -> str:
    """A markdown table: DSC / NSD per dataset and variant, object counts, small datasets flagged."""
    variants = results["variants"]
    header = ["dataset", "objects"] + [f"{metric} {VARIANT_TITLES.get(name, name)}" for name in variants for metric in ("DSC", "NSD")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    first = next(iter(variants.values()))
    minimum = results["data"]["min_objects"]
    for dataset, entry in first["by_dataset"].items():
        label = f"{dataset} (fewer than {minimum} objects: flagged)" if entry["flagged"] else dataset
        cells = [_number(variants[v]["by_dataset"][dataset][m], 3) for v in variants for m in ("dsc", "nsd")]
        lines.append("| " + " | ".join([label, str(entry["objects"]), *cells]) + " |")
    summaries = (
        ("mean over datasets", "mean_over_datasets"),
        ("mean over datasets, flagged left out", "mean_over_datasets_unflagged"),
        ("mean over objects", "mean_over_objects"),
    )
    for label, key in summaries:
        count = first[key].get("objects", len(first[key].get("datasets", [])))
        cells = [_number(variants[v][key][m], 3) for v in variants for m in ("dsc", "nsd")]
        lines.append("| " + " | ".join([f"*{label}*", str(count), *cells]) + " |")
    return "\n".join(lines) + "\n"


REFERENCE_KIND = "medkd.bench.reference-results"
ADAPT_KIND = "medkd.bench.adapt-methods"
SPEED_KIND = "medkd.bench.reference-speed"
VOLUMES_KIND = "medkd.bench.volumes"


def _flagged_name(dataset: str, entry: dict[str, Any]) -> str:
    return f"{dataset} ({entry['objects']}, flagged)" if entry["flagged"] else f"{dataset} ({entry['objects']})"


def _volumes(scores: dict[str, Any] | None) -> str:
    return "–" if not scores else f"{_number(scores['dsc'], 3)} / {_number(scores.get('nsd'), 3)} ({scores['objects']})"


def reference_table(results: dict[str, Any]) -> str:
    """A markdown table: one row per evaluated model of the reference run, DSC per dataset (objects),
    means over datasets (all, and without the flagged ones) and over objects, NSD, agreement with the
    teacher, the share of the teacher's DSC, encoder GFLOPs and the per-volume 3D scores where the eval
    scored volumes (latency: :func:`speed_table`)."""
    models = results["models"]
    first = models[0]["test"]["by_dataset"]
    datasets = sorted(first)
    header = [
        "model", "method", "phase", "runtime", *[f"DSC {_flagged_name(d, first[d])}" for d in datasets],
        "DSC mean (datasets)", "DSC mean (datasets, flagged out)", "DSC mean (objects)", "NSD mean (datasets, flagged out)",
        "agreement DSC (datasets, flagged out)", "agreement DSC (objects)", "of teacher", "encoder GFLOPs", "3D DSC / NSD (volume objects)",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in models:
        test = entry["test"]
        unflagged, objects = test["mean_over_datasets_unflagged"], test["mean_over_objects"]
        fraction = entry.get("dsc_of_teacher")
        cells = [
            f"`{entry['label']}`",
            entry.get("method") or "-",
            entry.get("phase") or "-",
            entry["runtime"],
            *[_number(test["by_dataset"].get(d, {}).get("dsc"), 3) for d in datasets],
            _number(test["mean_over_datasets"]["dsc"], 3),
            _number(unflagged["dsc"], 3),
            _number(objects["dsc"], 3),
            _number(unflagged["nsd"], 3),
            _number(unflagged.get("agreement_dsc"), 3),
            _number(objects.get("agreement_dsc"), 3),
            "–" if fraction is None or entry["role"] == "teacher" else f"{fraction:.1%}",
            _number(entry["profile"]["encoder_gflops"], 1),
            _volumes(entry.get("volumes")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def adapt_table(results: dict[str, Any]) -> str:
    """A markdown table: DSC / NSD per dataset for zero-shot and each adaptation method, its gain,
    trainable parameters and wall time."""
    methods = results["methods"]
    first = methods["zero-shot"]["test"]["by_dataset"]
    datasets = sorted(first)
    base = methods["zero-shot"]["test"]["mean_over_datasets"]["dsc"]
    header = ["method", *[f"DSC / NSD {_flagged_name(d, first[d])}" for d in datasets], "DSC mean (datasets)", "gain (points)",
              "DSC mean (datasets, flagged out)", "DSC mean (objects)", "trainable parameters", "wall time (min)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in methods.items():
        test = entry["test"]
        mean = test["mean_over_datasets"]["dsc"]
        trainable = entry["trainable_params"]
        share = f"{trainable:,} ({entry['trainable_fraction']:.2%})" if trainable else "0"
        cells = [
            name,
            *[f"{_number(test['by_dataset'][d]['dsc'], 3)} / {_number(test['by_dataset'][d]['nsd'], 3)}" for d in datasets],
            _number(mean, 3),
            "–" if name == "zero-shot" else f"{100 * (mean - base):+.1f}",
            _number(test["mean_over_datasets_unflagged"]["dsc"], 3),
            _number(test["mean_over_objects"]["dsc"], 3),
            share,
            "–" if name == "zero-shot" else _number(entry["wall_seconds"] / 60, 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def speed_table(results: dict[str, Any]) -> str:
    """A markdown table: encoder p50 / p90 of every shipped model, its speed-up over the teacher's FP32
    export and, for INT8, over its own FP32 export (one interleaved run)."""
    header = ["model", "graph", "precision", "p50 (ms)", "p90 (ms)", "speed-up vs teacher FP32", "INT8 speed-up vs own FP32"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in results["entries"]:
        int8 = entry["int8_speedup_vs_own_fp32"]
        cells = [f"`{entry['label']}`", entry["graph"], entry["precision"].upper(), _number(entry["p50_ms"], 1), _number(entry["p90_ms"], 1),
                 f"{entry['speedup_vs_teacher_fp32']:.2f}x", "–" if int8 is None else f"{int8:.2f}x"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def volumes_table(results: dict[str, Any]) -> str:
    """One row per model of ``benchmarks/volumes.py``: per-volume-object 3D DSC / NSD / HD95, start-up, one volume end to end."""
    header = ["model", "runtime", "objects", "3D DSC", "NSD (2 mm)", "HD95 (mm)", "start-up (s)", "one volume end to end, median (ms)", "range (ms)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, entry in results["models"].items():
        overall, timing = entry["summary"]["overall"], entry["end_to_end"]
        cells = [
            label,
            "ONNX Runtime" if entry["runtime"] != "Segmenter" else "PyTorch",
            str(overall["dsc"]["n"]),
            _number(overall["dsc"]["mean"], 3),
            _number(overall["nsd"]["mean"], 3),
            _number(overall["hd95"]["mean"], 2),
            _number(entry["startup_s"], 2),
            _number(timing["median_ms"], 0),
            f"{timing['min_ms']:.0f}–{timing['max_ms']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


FEDERATED_KIND = "medkd.bench.federated"


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.2f} MB"


def federated_table(results: dict[str, Any]) -> str:
    """Two markdown tables: test DSC per site of zero-shot, centralised and federated adaptation (the
    site's test objects, small ones flagged), and the bytes the federated run sent against full weights."""
    runs = results["runs"]
    names = [name for name in ("zero-shot", "centralised", "federated") if name in runs]
    first = runs["zero-shot"]["test"]
    header = ["site (test objects)", *[f"DSC {name}" for name in names]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for site in results["sites"]:
        cells = [_number(runs[name]["test"]["by_dataset"].get(site, {}).get("dsc"), 3) for name in names]
        lines.append("| " + " | ".join([_flagged_name(site, first["by_dataset"][site]), *cells]) + " |")
    means = [_number(runs[name]["test"]["mean_over_datasets"]["dsc"], 3) for name in names]
    lines.append("| " + " | ".join(["*mean over sites*", *means]) + " |")
    if "federated" not in runs:
        return "\n".join(lines) + "\n"
    sent = runs["federated"]["federated"]["communication"]
    rounds = len(sent["per_round"])
    lines += [
        "",
        f"| sent by the federated run ({rounds} rounds, {len(results['sites'])} sites, both ways) | per round | in all |",
        "|---|---|---|",
        f"| trainable parameters ({runs['federated']['trainable_params']:,}) | {_megabytes(sent['total_bytes'] // rounds)} | {_megabytes(sent['total_bytes'])} |",
        f"| full weights instead ({_megabytes(sent['full_model_bytes'])} a message) | {_megabytes(sent['full_weights_total_bytes'] // rounds)} | "
        f"{_megabytes(sent['full_weights_total_bytes'])} |",
        f"| *share of full weights* | | {sent['fraction_of_full_weights']:.2%} |",
    ]
    return "\n".join(lines) + "\n"


TABLES = {
    ZERO_SHOT_KIND: zero_shot_table,
    REFERENCE_KIND: reference_table,
    ADAPT_KIND: adapt_table,
    SPEED_KIND: speed_table,
    VOLUMES_KIND: volumes_table,
    FEDERATED_KIND: federated_table,
}


def table_for(results: dict[str, Any]) -> str:
    """The table a results JSON makes, by its kind."""
    kind = results.get("kind")
    if kind not in TABLES:
        raise ValueError(f"no README table for results of kind {kind!r}")
    return TABLES[kind](results)


def render(readme: str, root: Path = ROOT) -> str:
    """``readme`` with every results block regenerated from the JSON it names."""

    def replace(match: re.Match[str]) -> str:
        results = json.loads((root / match["path"]).read_text())
        return match.group(1) + table_for(results) + match.group(4)

    return BLOCK.sub(replace, readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="Exit 1 when the README differs from its JSON.")
    args = parser.parse_args()
    current = args.readme.read_text()
    if not BLOCK.search(current):
        print(f"{args.readme} has no '<!-- results: PATH -->' block", file=sys.stderr)
        return 2
    fresh = render(current)
    if args.check:
        if fresh != current:
            print(f"{args.readme}: results table differs from its JSON; run benchmarks/readme_results.py", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
