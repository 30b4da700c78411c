"""The bundle manifest (``manifest.json``): its schema, canonical bytes and validation.

The manifest is stored as canonical JSON (sorted keys, two-space indent, UTF-8, one trailing newline)
and the signature covers exactly those bytes. Validation is strict: unknown or missing keys and wrong
types are schema errors that name the key.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from medkd.config import from_mapping
from medkd.errors import BadInput

BUNDLE_FORMAT = "medkd.bundle"
BUNDLE_SCHEMA = 3  # 2: manifest.json first in the archive, with the size of every file; 3: each graph names its runtime
READABLE_SCHEMAS = (2, 3)
MANIFEST_MEMBER = "manifest.json"
SIGNATURE_MEMBER = "manifest.sig"
MODEL_CARD_MEMBER = "MODEL_CARD.md"
VARIANTS_DIR = "variants"
DATA_DIR = "data"
VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass
class TensorSpec:
    """One graph input or output: shape entries are sizes or dimension names."""

    name: str
    shape: list[Any]
    dtype: str


GRAPH_RUNTIMES = {
    "onnx": "a standard ONNX graph (float, or symmetric int8 Q/DQ as TensorRT builds from): any ONNX runtime",
    "onnxruntime-cpu": "an INT8 graph lowered for ONNX Runtime's CPU integer kernels (QLinearConv, MatMulIntegerToFloat), 7-bit weights: any x86 CPU",
    "onnxruntime-cpu-vnni": "an INT8 graph lowered for ONNX Runtime's CPU integer kernels with 8-bit weights: x86 CPUs with VNNI only",
    "tensorrt": "a TensorRT engine",
}


@dataclass
class GraphSpec:
    """One graph of a variant: its ONNX (or engine) file, tensors, and the runtime the file is for
    (:data:`GRAPH_RUNTIMES`; ``None`` only in schema 2 bundles, which did not say)."""

    name: str
    file: str
    files: list[str]
    opset: int | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    runtime: str | None = None


@dataclass
class EngineSpec:
    """What a TensorRT engine is tied to."""

    graph: str
    file: str
    precision: str
    tensorrt: str
    cuda: str | None
    compute_capability: str | None
    gpu: str | None
    jetpack: str | None
    version_compatible: bool
    hardware_compatibility: str


@dataclass
class Variant:
    """One runnable form of the model: an artifact directory below ``variants/``."""

    name: str
    format: Literal["onnx", "tensorrt"]
    precision: str
    directory: str
    artifact_kind: str
    artifact_id: str
    graphs: list[GraphSpec]
    engines: list[EngineSpec] = field(default_factory=list)
    opset: int | None = None
    onnxruntime: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelInfo:
    id: str
    version: str
    architecture: str
    family: str
    kwargs: dict[str, Any]
    input_size: int
    embedding_grid: int | None
    licence: str | None


@dataclass
class TargetInfo:
    name: str
    description: str
    platform: str
    compute_capability: str | None
    max_opset: int | None
    jetpack: str | None


@dataclass
class ProvenanceNode:
    """An artifact or file of the chain that made the model, pinned by SHA-256."""

    kind: str
    id: str | None
    name: str
    sha256: str
    found: bool
    created: str | None = None
    software: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)


@dataclass
class AccuracyEntry:
    """Means per dataset (and overall) of one evaluation of a model of the chain."""

    model: str
    artifact_id: str | None
    source: str
    split: str | None
    prompt: str | None
    crop: str | None
    by_dataset: dict[str, Any]
    overall: dict[str, Any]


@dataclass
class DatasetAttribution:
    dataset: str
    modality: str | None
    licences: list[str]
    attribution: str | None
    files: list[str]


@dataclass
class BundleManifest:
    format: Literal["medkd.bundle"]
    schema: int
    created: str
    medkd: str
    model: ModelInfo
    target: TargetInfo
    preprocessing: dict[str, Any]
    prompts: dict[str, Any]
    variants: list[Variant]
    provenance: list[ProvenanceNode]
    accuracy: list[AccuracyEntry]
    latency: list[dict[str, Any]]
    data: list[DatasetAttribution]
    licences: dict[str, Any]
    signer: str | None
    files: dict[str, str]
    sizes: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise BadInput(f"the bundle has no variant '{name}' (it has {', '.join(v.name for v in self.variants)})")


def canonical_bytes(value: dict[str, Any]) -> bytes:
    """The exact bytes of ``manifest.json``: what a signature covers."""
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def parse_manifest(data: bytes) -> BundleManifest:
    """Validate ``manifest.json`` bytes against the schema; ``BadInput`` names what is wrong."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{MANIFEST_MEMBER} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict) or value.get("format") != BUNDLE_FORMAT:
        raise BadInput(f"{MANIFEST_MEMBER} is not a {BUNDLE_FORMAT} manifest")
    schema = value.get("schema")
    if schema not in READABLE_SCHEMAS:
        raise BadInput(f"bundle schema {schema!r} is not one this medkd reads ({', '.join(map(str, READABLE_SCHEMAS))}): pack the bundle again with this medkd")
    manifest = from_mapping(BundleManifest, value, "manifest")
    _check_references(manifest)
    return manifest


def _check_files(manifest: BundleManifest) -> None:
    """Plain relative file names, none of them also a folder of another; a size in bytes for each."""
    unsafe = [name for name in manifest.files if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts]
    if unsafe:
        raise BadInput(f"manifest.files: {unsafe[0]} is not a path inside the bundle")
    folders = {str(parent) for name in manifest.files for parent in PurePosixPath(name).parents}
    clashing = sorted(folders & set(manifest.files))
    if clashing:
        raise BadInput(f"manifest.files: {clashing[0]} is both a file and a folder")
    if set(manifest.sizes) != set(manifest.files):
        odd = sorted(set(manifest.sizes) ^ set(manifest.files))[0]
        raise BadInput(f"manifest.sizes: no size for {odd}" if odd in manifest.files else f"manifest.sizes: {odd} is not among the hashed files")
    wrong = [name for name, size in manifest.sizes.items() if not isinstance(size, int) or isinstance(size, bool) or size < 0]
    if wrong:
        raise BadInput(f"manifest.sizes[{wrong[0]}]: expected a size in bytes, got {manifest.sizes[wrong[0]]!r}")


def _check_references(manifest: BundleManifest) -> None:
    """Valid file names and sizes; the model card and every file a variant or dataset names among them;
    unique variant names, each variant in ``variants/NAME``."""
    _check_files(manifest)
    if MODEL_CARD_MEMBER not in manifest.files:
        raise BadInput(f"manifest.files: {MODEL_CARD_MEMBER} is not among the hashed files")
    names = [v.name for v in manifest.variants]
    if not names or len(set(names)) != len(names):
        raise BadInput("manifest.variants: variant names must be present and unique")
    for variant in manifest.variants:
        if not VARIANT_NAME.fullmatch(variant.name) or variant.directory != f"{VARIANTS_DIR}/{variant.name}":
            raise BadInput(f"manifest.variants[{variant.name}]: a variant is named with a-z, 0-9 and '-' and lies in {VARIANTS_DIR}/NAME")
        unnamed = [g.name for g in variant.graphs if g.runtime not in GRAPH_RUNTIMES and not (g.runtime is None and manifest.schema == 2)]
        if unnamed:
            raise BadInput(f"manifest.variants[{variant.name}].graphs[{unnamed[0]}].runtime: one of {', '.join(GRAPH_RUNTIMES)} from schema 3 on")
        named = [f"{variant.directory}/{f}" for graph in variant.graphs for f in graph.files]
        named += [f"{variant.directory}/{e.file}" for e in variant.engines] + [f"{variant.directory}/manifest.json"]
        missing = [name for name in named if name not in manifest.files]
        if missing:
            raise BadInput(f"manifest.variants[{variant.name}]: {missing[0]} is not among the hashed files")
    for dataset in manifest.data:
        missing = [name for name in dataset.files if name not in manifest.files]
        if missing:
            raise BadInput(f"manifest.data[{dataset.dataset}]: {missing[0]} is not among the hashed files")
