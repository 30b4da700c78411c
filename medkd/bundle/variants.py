"""The artifacts of a run directory and the variants a target's bundle carries.

A run directory holds stage artifacts (directories with ``manifest.json``), up to three levels deep;
it may itself be an export artifact. Any artifact whose manifest has the export layout section
(``config.export``) is an ONNX variant (the export, and quantized ONNX), ``engines`` artifacts are
TensorRT variants; AOTInductor packages are left out (they hold compiled code). Model artifacts serve
for provenance and accuracy only: their weights never go into a bundle.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from medkd.artifacts import MANIFEST_NAME, Manifest, read_manifest
from medkd.bundle.schema import VARIANTS_DIR, EngineSpec, GraphSpec, TensorSpec, Variant
from medkd.bundle.targets import Target
from medkd.errors import BadInput

SEARCH_DEPTH = 3
PACKABLE_SUFFIXES = (".onnx", ".onnx.data", ".plan", ".engine", ".calib")  # .calib: TensorRT INT8 calibration cache (text)
PRECISION_ORDER = ("fp32", "fp16", "int8", "best")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class RunArtifact:
    directory: Path
    manifest: Manifest


@dataclass
class PlannedVariant:
    """A variant and where its files come from: artifact file name -> SHA-256 its manifest records, and
    files written for the bundle alone (name -> path)."""

    variant: Variant
    source: RunArtifact
    files: dict[str, str]
    derived: dict[str, Path] = field(default_factory=dict)


def walk_run(run: Path, max_depth: int) -> Iterator[tuple[Path, list[str]]]:
    """Each directory of ``run`` down to ``max_depth`` levels (links followed, hidden ones skipped) and its file names."""
    for directory, subdirs, names in os.walk(run, followlinks=True):
        depth = len(Path(directory).relative_to(run).parts)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and depth < max_depth)
        yield Path(directory), sorted(names)


def find_artifacts(run: Path) -> list[RunArtifact]:
    """Complete artifacts in ``run`` (itself included)."""
    if not run.is_dir():
        raise BadInput(f"{run} is not a directory")
    found = []
    for directory, names in walk_run(run, SEARCH_DEPTH):
        if MANIFEST_NAME in names:
            try:
                found.append(RunArtifact(directory, read_manifest(directory)))
            except BadInput:
                continue  # an incomplete or foreign directory: not an artifact
    return found


def _tensors(specs: list[dict[str, Any]]) -> list[TensorSpec]:
    return [TensorSpec(s["name"], list(s["shape"]), s["dtype"]) for s in specs]


def _graph_spec(name: str, entry: dict[str, Any], file: str | None = None) -> GraphSpec:
    """A layout graph entry; ``file`` replaces its ONNX files (an engine built from it)."""
    files = [file] if file else list(entry["files"])
    runtime = "tensorrt" if file else "onnx"
    return GraphSpec(name, file or entry["file"], files, entry.get("opset"), _tensors(entry["inputs"]), _tensors(entry["outputs"]), runtime)


def onnx_precision(artifact: RunArtifact) -> str:
    """The layout's stated precision (``medkd quantize``), else int8 for Q/DQ graphs, fp16 for float16 weights, else fp32."""
    layout = artifact.manifest.config["export"]
    if isinstance(layout.get("precision"), str):
        return layout["precision"]
    graphs = [onnx.load(str(artifact.directory / g["file"]), load_external_data=False) for g in layout["graphs"].values()]
    if any(node.op_type in QDQ_OPS for graph in graphs for node in graph.graph.node):
        return "int8"
    if any(init.data_type == onnx.TensorProto.FLOAT16 for graph in graphs for init in graph.graph.initializer):
        return "fp16"
    return "fp32"


def _onnx_variant(artifact: RunArtifact) -> Variant:
    layout = artifact.manifest.config["export"]
    graphs = [_graph_spec(name, entry) for name, entry in layout["graphs"].items()]
    opsets = [g.opset for g in graphs if g.opset is not None]
    return Variant(
        name="",
        format="onnx",
        precision=onnx_precision(artifact),
        directory="",
        artifact_kind=artifact.manifest.kind,
        artifact_id=artifact.manifest.id,
        graphs=graphs,
        opset=layout.get("opset", max(opsets, default=None)),
        onnxruntime=artifact.manifest.software.get("onnxruntime"),
        validation=artifact.manifest.metrics.get("validation", {}),
    )


def _engine_variant(artifact: RunArtifact) -> Variant:
    config = artifact.manifest.config
    layout_graphs = config["export"]["graphs"]
    graphs, engines = [], []
    for graph, meta in config["engines"].items():
        graphs.append(_graph_spec(graph, layout_graphs[graph], meta["file"]))
        engines.append(
            EngineSpec(
                graph=graph,
                file=meta["file"],
                precision=meta.get("precision", config.get("precision", "")),
                tensorrt=str(meta["tensorrt"]),
                cuda=meta.get("cuda"),
                compute_capability=meta.get("compute_capability"),
                gpu=meta.get("gpu"),
                jetpack=meta.get("jetpack"),
                version_compatible=bool(meta.get("version_compatible", False)),
                hardware_compatibility=meta.get("hardware_compatibility", "none"),
            )
        )
    return Variant("", "tensorrt", str(config.get("precision", "")), "", artifact.manifest.kind, artifact.manifest.id, graphs, engines)


def _exclusion(artifact: RunArtifact, variant: Variant, target: Target) -> str | None:
    unpackable = [name for name in artifact.manifest.files if not name.endswith(PACKABLE_SUFFIXES)]
    if unpackable:
        return f"holds {unpackable[0]}, which bundles do not carry (only ONNX, engines and calibration caches)"
    named = {f for graph in variant.graphs for f in graph.files}
    unhashed = sorted(named - set(artifact.manifest.files))
    if unhashed:
        return f"its manifest does not hash {unhashed[0]}"
    if variant.format == "tensorrt":
        return target.engine_exclusion(variant.engines)
    return target.onnx_exclusion(variant.precision, variant.opset)


def _model_key(artifact: RunArtifact) -> tuple[str, str, int]:
    layout = artifact.manifest.config["export"]
    return layout["model"]["name"], repr(sorted(layout["model"].get("kwargs", {}).items())), int(layout["preprocessing"]["input_size"])


def plan_variants(artifacts: list[RunArtifact], target: Target) -> tuple[list[PlannedVariant], list[tuple[Path, str]]]:
    """The variants ``target`` takes, in order (ONNX by precision, then engines), and what was left out, why."""
    planned: list[PlannedVariant] = []
    skipped: list[tuple[Path, str]] = []
    for artifact in artifacts:
        config = artifact.manifest.config
        if artifact.manifest.kind == "aoti":
            skipped.append((artifact.directory, "AOTInductor packages hold compiled code, which bundles do not carry"))
            continue
        if not isinstance(config.get("export"), dict):
            continue
        try:
            variant = _engine_variant(artifact) if artifact.manifest.kind == "engines" else _onnx_variant(artifact)
        except (KeyError, TypeError, OSError) as exc:
            skipped.append((artifact.directory, f"its manifest or graphs are incomplete ({type(exc).__name__}: {exc})"))
            continue
        reason = _exclusion(artifact, variant, target)
        if reason is not None:
            skipped.append((artifact.directory, reason))
            continue
        planned.append(PlannedVariant(variant, artifact, {name: artifact.manifest.files[name] for name in sorted(artifact.manifest.files)}))
    models = {_model_key(p.source) for p in planned}
    if len(models) > 1:
        raise BadInput(f"the run holds exports of {len(models)} different models ({', '.join(sorted(m[0] for m in models))}): pack one run per model")
    rank = {precision: i for i, precision in enumerate(PRECISION_ORDER)}
    planned.sort(key=lambda p: (p.variant.format == "tensorrt", rank.get(p.variant.precision, len(rank)), str(p.source.directory)))
    taken: set[str] = set()
    for item in planned:
        base = name = re.sub(r"[^a-z0-9]+", "-", f"{item.variant.format}-{item.variant.precision}".lower()).strip("-")
        for number in itertools.count(2):
            if name not in taken:
                break
            name = f"{base}-{number}"
        taken.add(name)
        item.variant.name = name
        item.variant.directory = f"{VARIANTS_DIR}/{name}"
    return planned, skipped
