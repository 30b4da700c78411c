"""TensorRT engines from the exported ONNX graphs, with the TensorRT 10.x / 11 Python API.

- INT8 is explicit quantization from Q/DQ ONNX (``medkd quantize``): TensorRT 11 takes only strongly
  typed networks (precision from the graph); 10.x builds it with ``BuilderFlag.INT8`` (deprecated there
  but what JetPack 6's 10.3 needs for Q/DQ mixed with FP16).
- FP16 keeps normalisation, softmax and reduction layers in FP32 (``OBEY_PRECISION_CONSTRAINTS``).
- One optimization profile per engine (min / opt / max per dynamic input), an optional timing cache
  (read and written back), version compatibility and hardware compatibility level.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from medkd.export.trt_profiles import FP32_LAYER_KINDS, EngineOptions
from medkd.runtime.tensorrt import device_info, import_tensorrt

from medkd.artifacts import atomic_write_bytes
from medkd.errors import BadInput, MedkdError

HARDWARE_LEVELS = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}


def _major(trt: ModuleType) -> int:
    return int(trt.__version__.split(".")[0])


def _keep_fp32(trt: ModuleType, network: Any) -> int:
    kinds = {getattr(trt.LayerType, name) for name in FP32_LAYER_KINDS}
    kept = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type in kinds:
            layer.precision = trt.float32
            for output in range(layer.num_outputs):
                layer.set_output_type(output, trt.float32)
            kept += 1
    return kept


def build_engine(onnx_path: Path, engine_path: Path, options: EngineOptions, qdq: bool) -> dict[str, Any]:
    """Build and write one serialized engine; returns its metadata."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = options.precision == "int8" and qdq and _major(trt) >= 11
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise MedkdError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    kept_fp32 = 0
    if options.precision in ("fp16", "best") and not strongly_typed:
        if _major(trt) >= 11:
            raise BadInput("TensorRT 11 takes precision from the ONNX types only: build fp32 or int8 (Q/DQ) engines")
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        kept_fp32 = _keep_fp32(trt, network)
    if options.precision in ("int8", "best") and qdq and not strongly_typed:
        config.set_flag(trt.BuilderFlag.INT8)
    if options.profiles:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in options.profiles.items():
            profile.set_shape(name, tuple(low), tuple(opt), tuple(high))
        config.add_optimization_profile(profile)
    cache = None
    if options.timing_cache is not None:
        existing = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        cache = config.create_timing_cache(existing)
        config.set_timing_cache(cache, ignore_mismatch=False)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, HARDWARE_LEVELS[options.hardware_compatibility])
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MedkdError(f"TensorRT could not build an engine from {onnx_path.name} (see its log above)")
    atomic_write_bytes(engine_path, bytes(serialized))
    if cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(cache.serialize()))
    return {
        "file": engine_path.name,
        "onnx": onnx_path.name,
        "precision": options.precision,
        "strongly_typed": strongly_typed,
        "fp32_layers": kept_fp32,
        "profiles": options.profiles,
        "workspace_mib": options.workspace_mib,
        "version_compatible": options.version_compatible,
        "hardware_compatibility": options.hardware_compatibility,
        "tensorrt": trt.__version__,
        **device_info(),
    }
