"""Open any exported model as a segmenter: export artifact (ONNX Runtime), ``.pt2``, TensorRT ``.plan``."""

from __future__ import annotations

from pathlib import Path

from medkd.export.runtime import ExportedSegmenter, OnnxSegmenter

from medkd.artifacts import read_manifest
from medkd.errors import BadInput


def open_exported(path: Path) -> ExportedSegmenter:
    """The runtime for ``path``: ONNX Runtime (CPU) for an export directory, AOTInductor for ``.pt2``,
    TensorRT for a ``.plan`` or an engines directory. Each runs on the device it was built for."""
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    kind = None if path.suffix in (".pt2", ".plan") else read_manifest(path).kind
    if path.suffix == ".pt2" or kind == "aoti":
        from medkd.export.aoti import PACKAGE_FILE, AotiSegmenter

        return AotiSegmenter(path if path.suffix == ".pt2" else path / PACKAGE_FILE)
    if path.suffix == ".plan" or kind == "engines":
        from medkd.export.tensorrt_runtime import TensorRTSegmenter

        return TensorRTSegmenter(path.parent if path.suffix == ".plan" else path)
    return OnnxSegmenter(path)
