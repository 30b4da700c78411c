"""TensorRT build settings shared by the Python builder and the equivalent ``trtexec`` commands."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import onnx

PRECISIONS = ("fp32", "fp16", "int8", "best")
# Kept in FP32 in FP16 builds (pitfall 1: LayerNorm / softmax overflow in FP16 ViTs): TensorRT layer
# kinds for the Python builder, the ONNX operators they come from for trtexec's per-layer precisions.
FP32_LAYER_KINDS = ("NORMALIZATION", "SOFTMAX", "REDUCE")
FP32_ONNX_OPS = ("LayerNormalization", "Softmax", "ReduceMean")


@dataclass
class EngineOptions:
    """How to build one engine."""

    precision: str = "fp16"
    workspace_mib: int = 2048
    timing_cache: Path | None = None
    version_compatible: bool = False
    hardware_compatibility: str = "none"  # none | ampere+ | same-compute-capability
    profiles: dict[str, list[list[int]]] = field(default_factory=dict)


def shape_text(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


def fp32_nodes(onnx_path: Path) -> list[str]:
    """Names of the nodes an FP16 build keeps in FP32 (TensorRT names layers after ONNX nodes)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    return [node.name for node in model.graph.node if node.op_type in FP32_ONNX_OPS]


def trtexec_command(onnx_path: Path, engine_path: Path, options: EngineOptions, qdq: bool) -> str:
    """The ``trtexec`` line that builds the same engine as :func:`medkd.export.tensorrt_build.build_engine`."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}", f"--memPoolSize=workspace:{options.workspace_mib}M"]
    for flag, index in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        if options.profiles:
            args.append(f"{flag}=" + ",".join(f"{name}:{shape_text(shapes[index])}" for name, shapes in options.profiles.items()))
    if options.precision in ("fp16", "best"):
        args.append("--fp16")
        kept = fp32_nodes(onnx_path)
        if kept:
            args.append("--precisionConstraints=obey")
            args.append("--layerPrecisions=" + ",".join(f"{name}:fp32" for name in kept))
            args.append("--layerOutputTypes=" + ",".join(f"{name}:fp32" for name in kept))
    if options.precision in ("int8", "best") and qdq:
        args.append("--stronglyTyped" if options.precision == "int8" else "--int8")
    if options.timing_cache is not None:
        args.append(f"--timingCacheFile={options.timing_cache}")
    if options.version_compatible:
        args.append("--versionCompatible")
    if options.hardware_compatibility != "none":
        args.append(f"--hardwareCompatibilityLevel={options.hardware_compatibility}")
    return shlex.join(args)
