"""The results of a finished reference run, gathered into one JSON: every evaluated model with its test
scores (each dataset with its object count, means over datasets with the small ones flagged, and over
objects), agreement with the teacher, size, encoder GFLOPs and ONNX Runtime latency, and the run's
wall time per stage.

    python benchmarks/reference_results.py runs/reference-cpu            # prints a table, writes the JSON
    python benchmarks/readme_results.py                                   # the README table from that JSON

Nothing is re-measured: scores come from the run's ``eval/*.json`` (per-object records of ``medkd
eval``), latency from its ``bench/*.json`` (``medkd bench run``, per graph), training facts from the
artifacts' manifests and wall time from ``pipeline.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, read_manifest, software_versions  # noqa: E402
from medkd.bench import device_info  # noqa: E402
from medkd.bench.suite import portable_cache, results_path  # noqa: E402
from medkd.evaluation.scores import MIN_OBJECTS, dataset_scores  # noqa: E402
from medkd.zoo import get_spec, profile_model  # noqa: E402
from medkd.zoo.artifact import artifact_model_ref  # noqa: E402

KIND = "medkd.bench.reference-results"
METRICS = ("dsc", "nsd", "agreement_dsc")
RUNTIMES = {"fp32": "ONNX Runtime FP32", "int8": "ONNX Runtime INT8"}


def _source_facts(source: str) -> dict[str, Any]:
    """Architecture, runtime, method and phase of what an eval report evaluated."""
    path = Path(source)
    if not path.is_dir():  # a zoo name: the published weights as they are
        name = source
        return {"name": name, "kwargs": {}, "runtime": "PyTorch FP32", "method": "zero-shot", "phase": "published weights"}
    manifest = read_manifest(path)
    if manifest.kind == "export":
        export = manifest.config["export"]
        upstream = next((Path(i.path) for i in manifest.inputs if i.kind in ("student", "teacher", "export") and Path(i.path).is_dir()), None)
        facts = _source_facts(str(upstream)) if upstream is not None else {"method": None, "phase": None}
        model = export["model"]
        return {**facts, "name": model["name"], "kwargs": dict(model.get("kwargs") or {}), "runtime": RUNTIMES[str(export.get("precision", "fp32"))]}
    name, kwargs, _, _ = artifact_model_ref(path)
    if manifest.kind == "teacher":
        method = manifest.config["adapt"]["method"]
        return {"name": name, "kwargs": kwargs, "runtime": "PyTorch FP32", "method": f"adapted ({method})", "phase": "teacher"}
    if manifest.kind == "distill-phase":
        method = read_manifest(path.parent).config["distill"]["method"]
        return {"name": name, "kwargs": kwargs, "runtime": "PyTorch FP32", "method": method, "phase": "distillation alone"}
    distill = manifest.config["distill"]
    guard = manifest.metrics.get("finetune_guard")
    phase = "distillation alone"
    if guard:
        phase = "fine-tuned on ground truth" if guard["kept"] == "finetuned" else "distillation alone (fine-tuning refused by the guard)"
    return {"name": name, "kwargs": kwargs, "runtime": "PyTorch FP32", "method": distill["method"], "phase": phase}


def _latency(bench: Path) -> dict[str, float]:
    """p50 milliseconds per graph of a ``medkd bench run`` result."""
    if not bench.is_file():
        return {}
    document = json.loads(bench.read_text())
    return {entry["graph"]: entry["latency_ms"]["p50"] for entry in document.get("entries", [])}


def volume_scores(report: dict[str, Any]) -> dict[str, Any] | None:
    """Mean 3D DSC / NSD / HD95 over the volume objects an eval report scored (None without volumes)."""
    summary = (report.get("volumes") or {}).get("summary")
    if not summary or not summary.get("overall"):
        return None
    overall = summary["overall"]
    return {"objects": overall["dsc"]["n"], **{metric: overall[metric]["mean"] for metric in ("dsc", "nsd", "hd95") if metric in overall}}


def model_entry(run: Path, report_path: Path) -> dict[str, Any]:
    report = json.loads(report_path.read_text())
    label = report_path.stem
    facts = _source_facts(report["config"]["model"]["source"])
    profile = profile_model(get_spec(facts["name"]), **facts["kwargs"]).to_dict()
    role = "teacher" if label.startswith("teacher") else "baseline" if facts["method"] == "zero-shot" else "student"
    return {
        "label": label,
        "role": role,
        "source": report["config"]["model"]["source"],
        "model": {"name": facts["name"], "kwargs": facts["kwargs"]},
        "method": facts["method"],
        "phase": facts["phase"],
        "runtime": facts["runtime"],
        "preprocessing": report["config"]["preprocessing"],
        "profile": profile,
        "latency_p50_ms": _latency(run / "bench" / f"{label}.json"),
        "test": dataset_scores(report["summary"], METRICS, MIN_OBJECTS),
        "volumes": volume_scores(report),
    }


def _training(run: Path) -> dict[str, Any]:
    """Training facts of the teacher and each student from their manifests."""
    facts = {}
    for manifest_path in sorted(run.glob("*/manifest.json")) + sorted(run.glob("*/student/manifest.json")):
        manifest = read_manifest(manifest_path.parent)
        if manifest.kind not in ("teacher", "student"):
            continue
        label = manifest_path.parent.name if manifest.kind == "teacher" else manifest_path.parent.parent.name
        keep = ("trainable_params", "total_params", "train_items", "train_seconds_this_session", "cache", "inherited", "finetune_guard")
        facts[label] = {key: manifest.metrics[key] for key in keep if key in manifest.metrics}
        if "cache" in facts[label]:
            facts[label]["cache"] = portable_cache(facts[label]["cache"])
    return facts


def collect(run: Path) -> dict[str, Any]:
    state = json.loads((run / "pipeline.json").read_text())
    stages = {name: entry.get("seconds") for name, entry in state["stages"].items()}
    models = [model_entry(run, path) for path in sorted((run / "eval").glob("*.json"))]
    teacher = next((m for m in models if m["label"] in ("teacher", "teacher-export")), None)
    reference = teacher["test"]["mean_over_datasets_unflagged"]["dsc"] if teacher else None
    for entry in models:
        own = entry["test"]["mean_over_datasets_unflagged"]["dsc"]
        entry["dsc_of_teacher"] = own / reference if reference and own is not None else None
    return {
        "kind": KIND,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run": run.name,
        "recipe": state.get("recipe", {}).get("path"),
        "device": device_info(),
        "software": software_versions(),
        "data": {"min_objects": MIN_OBJECTS, "split": "test", "prompt": "box"},
        "wall_seconds": {"stages": stages, "total": round(sum(v for v in stages.values() if v), 1)},
        "training": _training(run),
        "models": models,
    }


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="A finished run directory (medkd pipeline --out).")
    parser.add_argument("--out", type=Path, help="JSON to write (default: benchmarks/results/reference-cpu-<date>-<device>.json).")
    args = parser.parse_args()
    results = collect(args.run)
    out = args.out or results_path(ROOT / "benchmarks" / "results", "reference-cpu", results["device"])
    atomic_write_json(out, results)
    for entry in results["models"]:
        test = entry["test"]
        print(
            f"{entry['label']:<26} {entry['runtime']:<18} DSC datasets {_cell(test['mean_over_datasets']['dsc'])}"
            f" (unflagged {_cell(test['mean_over_datasets_unflagged']['dsc'])}) objects {_cell(test['mean_over_objects']['dsc'])}"
            f" agreement {_cell(test['mean_over_objects']['agreement_dsc'])} encoder {_cell(entry['latency_p50_ms'].get('encoder'), 1)} ms"
        )
    print(f"wall time {results['wall_seconds']['total'] / 60:.1f} min; wrote {out}")


if __name__ == "__main__":
    main()
