"""Accuracy and latency a run measured, for the bundle manifest and the model card.

Accuracy comes from ``medkd eval`` reports (kind ``medkd.eval``) in the run directory (two levels deep)
or given by path, each attributed to the artifact of the chain it evaluated, from the validation
summaries (``metrics.val``) in the chain's manifests, and from ``medkd quantize``'s gate (FP32 against
the quantized graphs per split, ``metrics.quantization.accuracy``). Latency comes from benchmark
results (kind ``medkd.bench...``) found the same way and from ``metrics.latency`` or
``metrics.quantization.latency`` in the chain's manifests. Entries are labelled with the artifact's
directory name (its stage in a run: export, quant, student, teacher).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medkd.artifacts import MANIFEST_NAME, read_manifest
from medkd.bundle.provenance import Provenance
from medkd.bundle.schema import AccuracyEntry, ProvenanceNode
from medkd.bundle.variants import walk_run
from medkd.errors import BadInput
from medkd.evaluation.report import REPORT_KIND

BENCH_KIND_PREFIX = "medkd.bench"
REPORT_DEPTH = 2


def _is_report(value: Any) -> bool:
    kind = value.get("kind") if isinstance(value, dict) else None
    return isinstance(kind, str) and (kind == REPORT_KIND or kind.startswith(BENCH_KIND_PREFIX))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def find_reports(run: Path, extra: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Evaluation and benchmark reports in ``run`` and in ``extra`` (each of which must be one)."""
    reports = []
    for directory, names in walk_run(run, REPORT_DEPTH):
        for name in names:
            if name.endswith(".json") and name != MANIFEST_NAME:
                value = _read_json(directory / name)
                if _is_report(value):
                    reports.append((directory / name, value))
    for path in extra:
        value = _read_json(path)
        if not _is_report(value):
            raise BadInput(f"{path} is not a medkd eval or benchmark report")
        reports.append((path, value))
    return reports


def _means(stats: dict[str, Any]) -> dict[str, Any]:
    """``{metric: {mean, median, n}}`` -> ``{metric: mean, ..., n: objects}``."""
    metrics = {key: value for key, value in stats.items() if isinstance(value, dict) and "mean" in value}
    condensed: dict[str, Any] = {key: value["mean"] for key, value in sorted(metrics.items())}
    condensed["n"] = max((value.get("n", 0) for value in metrics.values()), default=0)
    return condensed


def _entry(model: str, artifact_id: str | None, source: str, summary: dict[str, Any], config: dict[str, Any]) -> AccuracyEntry:
    return AccuracyEntry(
        model=model,
        artifact_id=artifact_id,
        source=source,
        split=config.get("split"),
        prompt=config.get("prompt"),
        crop=config.get("crop"),
        by_dataset={dataset: _means(stats) for dataset, stats in sorted(summary.get("by_dataset", {}).items())},
        overall=_means(summary.get("overall", {})),
    )


def _quantization_entries(node: ProvenanceNode, report: dict[str, Any]) -> list[AccuracyEntry]:
    """One entry per split of ``medkd quantize``'s gate: the quantized graphs' DSC / NSD and the drop from FP32."""
    precision = report.get("precision")
    crop = report.get("calibration", {}).get("crop")
    entries = []
    for split, scores in sorted(report.get("accuracy", {}).items()):
        overall = {**scores.get(precision, {}), "dsc_drop": scores.get("dsc_drop"), "n": scores.get("objects")}
        entries.append(AccuracyEntry(node.name, node.id, f"{node.name} manifest ({precision} gate against FP32)", split, "box", crop, {}, overall))
    return entries


def accuracy_entries(reports: list[tuple[Path, dict[str, Any]]], chain: Provenance) -> list[AccuracyEntry]:
    """Validation summaries and quantization gates of the chain's artifacts, then every eval report."""
    entries = []
    for directory, node in chain.artifacts.items():
        metrics = read_manifest(directory).metrics
        if isinstance(metrics.get("val"), dict):
            entries.append(_entry(node.name, node.id, f"{node.name} manifest (validation during training)", metrics["val"], {"split": "val"}))
        if isinstance(metrics.get("quantization"), dict):
            entries += _quantization_entries(node, metrics["quantization"])
    for path, report in reports:
        if report["kind"] != REPORT_KIND:
            continue
        config = report.get("config", {})
        model = config.get("model", {})
        node = chain.artifacts.get(Path(str(model.get("source"))).resolve())
        label = node.name if node is not None else str(model.get("name") or model.get("source"))
        entries.append(_entry(label, None if node is None else node.id, f"medkd eval report {path.name}", report.get("summary", {}), config))
    return entries


def latency_entries(reports: list[tuple[Path, dict[str, Any]]], chain: Provenance) -> list[dict[str, Any]]:
    """Benchmark reports as they are, then the latency recorded in the chain's manifests."""
    entries = [{"source": path.name, **report} for path, report in reports if report["kind"] != REPORT_KIND]
    for directory, node in chain.artifacts.items():
        metrics = read_manifest(directory).metrics
        latency = metrics.get("latency") or (metrics.get("quantization") or {}).get("latency")
        if latency is not None:
            entries.append({"source": f"{node.name} manifest", "artifact_id": node.id, "latency": latency})
    return entries
