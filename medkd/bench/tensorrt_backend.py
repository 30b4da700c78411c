"""TensorRT workloads: a serialized engine (``.plan``) or an engines artifact (``medkd export tensorrt``).

Inputs and outputs stay in CUDA memory (allocated through PyTorch) and each run is one
``execute_async_v3`` on a stream followed by its synchronisation, so the time is the engine's own.
Dynamic inputs take the optimization profile's ``opt`` shape with the batch on axis 0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medkd.artifacts import MANIFEST_NAME, read_manifest
from medkd.bench.inputs import onnx_feeds
from medkd.bench.subject import Subject, artifact_id, select_graphs
from medkd.bench.timing import Workload
from medkd.errors import BadInput
from medkd.export.engines import ENGINES_KIND
from medkd.runtime.tensorrt import import_tensorrt

ENGINE_SUFFIXES = (".plan", ".engine")
_PRECISION_IN_NAME = re.compile(r"\.(fp32|fp16|int8|best)\.(?:plan|engine)$")


def _engine_files(path: Path) -> tuple[str, dict[str, Path], str]:
    """Model name, graph name -> engine file, and precision."""
    if path.is_file() and path.suffix in ENGINE_SUFFIXES:
        match = _PRECISION_IN_NAME.search(path.name)
        graph = path.name.split(".")[0]
        return path.stem, {graph: path}, match.group(1) if match else "unknown"
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        manifest = read_manifest(path)
        if manifest.kind == ENGINES_KIND:
            engines = {name: path / entry["file"] for name, entry in manifest.config["engines"].items()}
            return manifest.config["export"]["model"]["name"], engines, manifest.config.get("precision", "unknown")
    raise BadInput(f"--backend tensorrt takes a .plan engine or an engines artifact directory (medkd export tensorrt), not {path}")


def _shape(trt: Any, engine: Any, name: str, batch: int) -> list[int]:
    shape = list(engine.get_tensor_shape(name))
    if all(dim >= 0 for dim in shape):
        return shape
    low, opt, high = (list(dims) for dims in engine.get_tensor_profile_shape(name, 0))
    if shape[0] < 0:
        if not low[0] <= batch <= high[0]:
            raise BadInput(f"--batch {batch} is outside the engine's profile for {name} ({low[0]}-{high[0]})")
        opt[0] = batch
    return opt


class _EngineRun:
    """One engine with device buffers bound; calling it runs the engine once and waits for it."""

    def __init__(self, trt: Any, runtime: Any, path: Path, batch: int) -> None:
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BadInput(f"TensorRT {trt.__version__} cannot load {path.name}: engines are tied to the TensorRT version and GPU they were built with")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        specs = [{"name": n, "shape": _shape(trt, self.engine, n, batch), "dtype": np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))).name} for n in inputs]
        self.shapes = {spec["name"]: spec["shape"] for spec in specs}
        self.buffers = {name: torch.from_numpy(array).cuda() for name, array in onnx_feeds(specs, batch).items()}
        for name, tensor in self.buffers.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
        for name in names:
            if name not in self.buffers:
                dtype = torch.from_numpy(np.empty(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
                self.buffers[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        for name, tensor in self.buffers.items():
            self.context.set_tensor_address(name, tensor.data_ptr())
        self.stream = torch.cuda.Stream()

    def __call__(self) -> None:
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()

    def device_memory_mib(self) -> float | None:
        size = getattr(self.engine, "device_memory_size_v2", None) or getattr(self.engine, "device_memory_size", None)
        return None if size is None else round(size / (1 << 20), 1)


def open_tensorrt(source: str, batch: int, graphs: list[str] | None) -> Subject:
    """``source`` as TensorRT workloads (``BadInput`` where TensorRT or a CUDA GPU is missing)."""
    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise BadInput("TensorRT engines run on a CUDA GPU, and there is none here")
    path = Path(source)
    model, engines, precision = _engine_files(path)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    workloads = []
    for name in select_graphs(list(engines), graphs):
        run = _EngineRun(trt, runtime, engines[name], batch)
        details = {"engine_device_memory_mib": run.device_memory_mib()}
        workloads.append(Workload(name, run, run.shapes, batch, file=engines[name].name, precision=precision, details=details))
    return Subject(model, source, "tensorrt", precision, "cuda", workloads, artifact_id(path), [f"TensorRT {trt.__version__}"])
