"""Can this device run a bundle's variants? One check per ONNX graph and per TensorRT engine.

ONNX graphs are loaded into ONNX Runtime sessions here (the real test of opset and operator support).
Engines are judged by what they were built for: the same TensorRT version (major.minor.patch; a
version-compatible engine also runs on later versions of the same major), and the same compute
capability (an ``ampere+`` hardware-compatible engine runs on any compute capability 8.0 or above).
Without TensorRT or a CUDA GPU here, engines are "not checkable here".
"""

from __future__ import annotations

import re
from pathlib import Path

from medkd.bundle.checks import Check
from medkd.bundle.device import DeviceProfile
from medkd.bundle.schema import EngineSpec, GraphSpec, Variant
from medkd.errors import BadInput
from medkd.runtime.onnx_runtime import cpu_session, first_line


def version_tuple(text: str, parts: int = 3) -> tuple[int, ...]:
    """``10.3.0.30`` -> ``(10, 3, 0)``; missing parts count as 0."""
    numbers = [int(n) for n in re.findall(r"\d+", text)[:parts]]
    return tuple(numbers + [0] * (parts - len(numbers)))


def tensorrt_fits(engine: EngineSpec, local: str) -> bool:
    built, here = version_tuple(engine.tensorrt), version_tuple(local)
    if engine.version_compatible:
        return here[0] == built[0] and here >= built
    return here == built


def capability_fits(engine: EngineSpec, local: str) -> bool:
    if engine.hardware_compatibility == "ampere+":
        return version_tuple(local, 2) >= (8, 0)
    return engine.compute_capability is not None and version_tuple(local, 2) == version_tuple(engine.compute_capability, 2)


def engine_check(variant: Variant, engine: EngineSpec, device: DeviceProfile) -> Check:
    name = f"device {variant.name}/{engine.file}"
    needs = f"needs TensorRT {engine.tensorrt} and compute capability {engine.compute_capability}"
    problems, unknown = [], []
    if device.tensorrt is None:
        unknown.append("TensorRT is not installed")
    elif not tensorrt_fits(engine, device.tensorrt):
        rule = "the same major version or later" if engine.version_compatible else "only on the TensorRT version that built it"
        problems.append(f"built with TensorRT {engine.tensorrt}, this device has TensorRT {device.tensorrt} (runs {rule})")
    if device.compute_capability is None:
        unknown.append("no CUDA GPU")
    elif not capability_fits(engine, device.compute_capability):
        problems.append(f"built for compute capability {engine.compute_capability}, this GPU ({device.gpu}) has {device.compute_capability}")
    if problems:
        return Check(name, "fail", "incompatible: " + "; ".join(problems))
    if unknown:
        return Check(name, "skip", f"not checkable here ({', '.join(unknown)}); {needs}")
    return Check(name, "pass", f"TensorRT {device.tensorrt} on compute capability {device.compute_capability} fits ({needs})")


def onnx_check(variant: Variant, graph: GraphSpec, root: Path, device: DeviceProfile) -> Check:
    name = f"device {variant.name}/{graph.file}"
    try:
        cpu_session(root / variant.directory / graph.file, threads=1)
    except BadInput as exc:  # what ONNX Runtime (or the ONNX reader) said, without the unpacked path
        return Check(name, "fail", f"ONNX Runtime {device.onnxruntime} cannot load it (opset {graph.opset}): {first_line(exc.__cause__ or exc)}")
    note = ""
    if variant.onnxruntime and version_tuple(device.onnxruntime) < version_tuple(variant.onnxruntime):
        note = f"; older than ONNX Runtime {variant.onnxruntime}, which validated it"
    return Check(name, "pass", f"ONNX Runtime {device.onnxruntime} loads it (opset {graph.opset}){note}")


def device_checks(variants: list[Variant], root: Path, device: DeviceProfile) -> list[Check]:
    """Every ONNX graph and engine of ``variants`` (unpacked under ``root``) against ``device``."""
    checks = []
    for variant in variants:
        if variant.format == "tensorrt":
            checks += [engine_check(variant, engine, device) for engine in variant.engines]
        else:
            checks += [onnx_check(variant, graph, root, device) for graph in variant.graphs]
    return checks
