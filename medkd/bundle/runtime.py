"""Run a bundle: read it safely, refuse it unless every file checks out and a trusted key signed it
(:mod:`medkd.bundle.trust`), unpack it and open one variant with the export runtimes (ONNX Runtime on
the CPU, TensorRT engines on CUDA), the same segmenters ``medkd segment --model`` opens for an export
directory.

Only ONNX (``export``) and TensorRT (``engines``) artifacts are opened: never an AOTInductor package,
which holds compiled code. The default variant is a TensorRT one whose engines fit this device, else
the first ONNX variant (FP32 where the bundle has it).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medkd.artifacts import read_manifest
from medkd.bundle.compatibility import engine_check
from medkd.bundle.device import DeviceProfile, local_device
from medkd.bundle.schema import BundleManifest, Variant
from medkd.bundle.trust import TrustPolicy, UnsignedBundleWarning
from medkd.bundle.unpack import unpacked
from medkd.bundle.verify import inspect_bundle
from medkd.errors import BadInput
from medkd.runtime.exported import ExportedSegmenter
from medkd.runtime.onnx_runtime import OnnxSegmenter


def default_variant(manifest: BundleManifest, device: DeviceProfile) -> Variant:
    """The first TensorRT variant whose engines all fit ``device``, else the first ONNX variant."""
    for variant in manifest.variants:
        if variant.format == "tensorrt" and all(engine_check(variant, e, device).status == "pass" for e in variant.engines):
            return variant
    for variant in manifest.variants:
        if variant.format == "onnx":
            return variant
    raise BadInput(f"no variant of this bundle runs here ({', '.join(v.name for v in manifest.variants)} need TensorRT engines that fit)")


ARTIFACT_KINDS = {"onnx": "export", "tensorrt": "engines"}


def open_variant(root: Path, variant: Variant) -> ExportedSegmenter:
    """The segmenter of an unpacked variant, refusing any artifact kind but ONNX exports and engines."""
    directory = root / variant.directory
    kind, expected = read_manifest(directory).kind, ARTIFACT_KINDS[variant.format]
    if kind != expected:
        raise BadInput(f"variant {variant.name} holds a '{kind}' artifact, not '{expected}': bundles run only ONNX and TensorRT engines")
    if variant.format == "tensorrt":
        from medkd.runtime.tensorrt import TensorRTSegmenter

        return TensorRTSegmenter(directory)
    return OnnxSegmenter(directory, files={graph.name: graph.file for graph in variant.graphs})


@contextmanager
def verified_unpack(bundle: Path, trust: TrustPolicy) -> Iterator[tuple[Path, BundleManifest]]:
    """``bundle`` checked under ``trust``, then unpacked into a temporary directory: (that directory, its
    manifest). A bundle that fails a check is refused with ``BadInput`` naming the first failed check,
    before anything is written. The directory is removed on exit."""
    verification, scan = inspect_bundle(bundle, trust)
    if verification.failed or scan is None:
        first = verification.failed[0]
        raise BadInput(f"{bundle} is refused: {first.name}: {first.message} (medkd verify lists every check)")
    unsigned = [c.message for c in verification.checks if c.name == "signature" and c.status == "skip"]
    if unsigned:
        warnings.warn(f"{bundle}: {unsigned[0]}", UnsignedBundleWarning, stacklevel=3)
    with unpacked(bundle, scan, "medkd-bundle-") as root:
        yield root, scan.head.manifest  # type: ignore[misc]


def load_bundle_segmenter(bundle: Path, trust: TrustPolicy, variant: str | None = None) -> ExportedSegmenter:
    """A segmenter for ``variant`` (default: :func:`default_variant`) of ``bundle``, verified under ``trust``."""
    with verified_unpack(bundle, trust) as (root, manifest):
        chosen = manifest.variant(variant) if variant is not None else default_variant(manifest, local_device())
        segmenter = open_variant(root, chosen)  # sessions read their files now: the directory may go
    segmenter.source = f"{bundle}#{chosen.name}"
    return segmenter
