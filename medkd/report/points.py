"""Accuracy and latency of every artifact of a run, as points of an accuracy-against-latency trade-off.

Accuracy comes from, in this order: an eval report (``medkd eval``) of the artifact (test split
first), the quantization report of a quantized export, the validation summary in its manifest. An
FP32 export or AOTInductor package that passed its validation against PyTorch inherits its source's
accuracy (marked as such). Latency comes from benchmark results whose entries name the artifact's
manifest id: the end-to-end median where measured, else the sum of its graphs' medians (encoder +
decoder, or the U-Net), one point per backend and precision.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medkd.report.run import Artifact, RunContents, chain_order

SPLITS = ("test", "val")
INHERITING_KINDS = ("export", "aoti")
MIN_INHERIT_DSC = 0.99
INTERMEDIATE_KINDS = ("distill-phase",)  # checkpoints inside a distillation, not deliverables


@dataclass(frozen=True)
class Accuracy:
    dsc: float | None
    nsd: float | None
    split: str
    source: str
    by_modality: dict[str, float | None]


@dataclass(frozen=True)
class Point:
    """One artifact on one backend: its accuracy (if measured) and its latency (if benchmarked)."""

    artifact: str
    kind: str
    model: str | None
    backend: str
    precision: str
    latency_ms: float | None
    latency_source: str
    accuracy: Accuracy | None


def _mean(summary: dict[str, Any], metric: str) -> float | None:
    return (summary.get(metric) or {}).get("mean")


def _from_summary(summary: dict[str, Any], split: str, source: str) -> Accuracy:
    overall = summary["overall"]
    modalities = {name: _mean(stats, "dsc") for name, stats in summary.get("by_modality", {}).items()}
    return Accuracy(_mean(overall, "dsc"), _mean(overall, "nsd"), split, source, modalities)


def _same_path(recorded: str, artifact: Artifact) -> bool:
    path = Path(recorded)
    return path.exists() and path.resolve() == artifact.path.resolve()


def own_accuracy(artifact: Artifact, evals: list[tuple[Path, dict[str, Any]]]) -> Accuracy | None:
    """Accuracy measured on ``artifact`` itself (eval report, quantization report, manifest summary)."""
    reports = [(path, doc) for path, doc in evals if _same_path(doc.get("config", {}).get("model", {}).get("source", ""), artifact)]
    for split in SPLITS:
        for path, doc in reports:
            if doc["config"].get("split") == split:
                return _from_summary(doc["summary"], split, f"medkd eval ({path.name})")
    metrics = artifact.manifest.metrics
    quantization = metrics.get("quantization", {})
    for split in SPLITS:
        scores = quantization.get("accuracy", {}).get(split, {}).get(quantization.get("precision", ""))
        if scores:
            return Accuracy(scores.get("dsc"), scores.get("nsd"), split, "quantization report", {})
    for split in SPLITS:
        summary = metrics.get(split)
        if isinstance(summary, dict) and "overall" in summary:
            return _from_summary(summary, split, "manifest")
    return None


def accuracy_of(artifact: Artifact, contents: RunContents) -> Accuracy | None:
    """``own_accuracy``, or the source model's for an export validated to agree with it."""
    own = own_accuracy(artifact, contents.evals)
    if own is not None or artifact.manifest.kind not in INHERITING_KINDS:
        return own
    agreement = artifact.manifest.metrics.get("validation", {}).get("min_mask_dsc")
    by_id = {a.manifest.id: a for a in contents.artifacts}
    for item in artifact.manifest.inputs:
        if agreement is not None and agreement >= MIN_INHERIT_DSC and item.id in by_id:
            inherited = accuracy_of(by_id[item.id], contents)
            if inherited is not None:
                source = f"{inherited.source} of {by_id[item.id].name} (export agrees: min mask DSC {agreement:.4f})"
                return Accuracy(inherited.dsc, inherited.nsd, inherited.split, source, inherited.by_modality)
    return None


def latencies_of(artifact: Artifact, bench: list[tuple[Path, dict[str, Any]]]) -> list[tuple[str, str, float, str]]:
    """(backend, precision, milliseconds, how) for each backend the artifact was benchmarked on, batch 1."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for _, document in bench:
        for entry in document["entries"]:
            if entry.get("artifact_id") == artifact.manifest.id and entry["batch"] == 1:
                groups[(entry["backend"], entry["precision"])].append(entry)
    found = []
    for (backend, precision), entries in groups.items():
        whole = [e for e in entries if e["graph"] == "end-to-end"]
        if whole:
            found.append((backend, precision, whole[-1]["latency_ms"]["p50"], "end-to-end p50"))
        else:
            graphs = {e["graph"]: e["latency_ms"]["p50"] for e in entries}
            found.append((backend, precision, sum(graphs.values()), f"{' + '.join(sorted(graphs))} p50"))
    return found


def collect_points(contents: RunContents) -> list[Point]:
    """Every artifact with a model in it (chain order), once per benchmarked backend (once without latency if none)."""
    points = []
    for artifact in chain_order(contents.artifacts):
        if artifact.model_name is None or artifact.manifest.kind in INTERMEDIATE_KINDS:
            continue
        accuracy = accuracy_of(artifact, contents)
        latencies = latencies_of(artifact, contents.bench) or [("-", "-", None, "not benchmarked")]
        for backend, precision, milliseconds, how in latencies:
            points.append(Point(artifact.name, artifact.manifest.kind, artifact.model_name, backend, precision, milliseconds, how, accuracy))
    return points
