"""Bundles (``NAME.medkd``, ``medkd pack``): verified under the trust store (``--trust-store``,
``--allow-unsigned``), unpacked, and one variant timed.

``--backend ort`` takes the bundle's FP32 (else first non-INT8) ONNX variant, ``ort-int8`` its INT8
one, ``tensorrt`` its first engines variant. Sessions and engines are loaded before the unpacked
files are removed, as ``medkd segment --bundle`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from medkd.bench.subject import Subject
from medkd.errors import BadInput

if TYPE_CHECKING:
    from medkd.bench.run import BenchOptions

BUNDLE_SUFFIX = ".medkd"
VARIANT_FORMATS = {"ort": "onnx", "ort-int8": "onnx", "tensorrt": "tensorrt"}


def _choose(variants: list, backend: str):
    if backend not in VARIANT_FORMATS:
        raise BadInput(f"a bundle holds ONNX and TensorRT variants: use --backend ort, ort-int8 or tensorrt, not {backend}")
    candidates = [v for v in variants if v.format == VARIANT_FORMATS[backend]]
    if backend == "ort-int8":
        candidates = [v for v in candidates if v.precision == "int8"]
    elif backend == "ort":
        candidates = sorted((v for v in candidates if v.precision != "int8"), key=lambda v: v.precision != "fp32")
    if not candidates:
        raise BadInput(f"the bundle has no variant for --backend {backend} (it has {', '.join(f'{v.name} ({v.format} {v.precision})' for v in variants)})")
    return candidates[0]


def open_bundle(source: str, options: BenchOptions, open_directory: Callable[[str], Subject]) -> Subject:
    """The subject of the bundle's variant for ``options.backend``, opened by ``open_directory`` on the unpacked files."""
    from medkd.bundle.runtime import verified_unpack
    from medkd.bundle.trust import trust_policy

    bundle = Path(source)
    if not bundle.is_file():
        raise BadInput(f"{source} does not exist")
    with verified_unpack(bundle, trust_policy(options.trust_store, options.allow_unsigned)) as (root, manifest):
        variant = _choose(manifest.variants, options.backend)
        subject = open_directory(str(root / variant.directory))
    subject.source = f"{source}#{variant.name}"
    subject.notes.append(f"bundle variant {variant.name} ({variant.format} {variant.precision})")
    if manifest.signer is None:
        subject.notes.append("unsigned bundle, accepted because of --allow-unsigned")
    return subject
