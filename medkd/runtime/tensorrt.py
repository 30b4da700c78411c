"""TensorRT engines (``medkd export tensorrt``) behind the ``Segmenter`` contract, on CUDA via torch.

The decoder engine has a fixed number of point slots: prompts are padded with label -1 points, as
the engine was built (which changes SAM's token set slightly against the unpadded PyTorch path).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from medkd.artifacts import read_manifest
from medkd.errors import BadInput
from medkd.runtime.exported import ExportedSegmenter
from medkd.runtime.prompts import pad_points


def import_tensorrt() -> ModuleType:
    """``tensorrt``, or ``BadInput`` saying how to get it."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise BadInput(
            f"TensorRT is not installed here ({exc}); install medkd[tensorrt] on a GPU host or Jetson, "
            "or use --print-trtexec for the equivalent trtexec commands"
        ) from exc


def device_info() -> dict[str, Any]:
    """CUDA version, GPU name and compute capability (what the engine is tied to)."""
    import torch

    if not torch.cuda.is_available():
        return {"cuda": torch.version.cuda, "gpu": None, "compute_capability": None}
    major, minor = torch.cuda.get_device_capability()
    return {"cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


class _Engine:
    """One deserialized engine and its execution context; inputs and outputs as CUDA tensors."""

    def __init__(self, trt, runtime, path: Path) -> None:
        self.trt = trt
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def __call__(self, **inputs: np.ndarray) -> list[np.ndarray]:
        stream = torch.cuda.current_stream()
        keep = []
        for name, array in inputs.items():
            tensor = torch.from_numpy(np.ascontiguousarray(array, np.float32)).cuda()
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        results = []
        for name in self.outputs:
            dtype = torch.from_numpy(np.empty(0, self.trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            tensor = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, tensor.data_ptr())
            results.append(tensor)
        self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return [r.float().cpu().numpy() for r in results]


class TensorRTSegmenter(ExportedSegmenter):
    """The engines of an ``engines`` artifact directory."""

    def __init__(self, directory: Path) -> None:
        manifest = read_manifest(directory, "engines")
        super().__init__(manifest.config["export"], str(directory))
        trt = import_tensorrt()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines = {name: _Engine(trt, runtime, directory / entry["file"]) for name, entry in manifest.config["engines"].items()}
        self.point_slots = self.layout["prompts"]["point_slots"]
        self.device_name = "cuda"

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.engines["encoder"](image=images)[0]

    def decode(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coords, labels = pad_points(coords, labels, self.point_slots)
        engine = self.engines["decoder_trt"]
        outputs = dict(zip(engine.outputs, engine(image_embeddings=embedding, point_coords=coords, point_labels=labels)))
        return outputs["low_res_masks"], outputs["iou_predictions"]

    def unet(self, inputs: np.ndarray) -> np.ndarray:
        engine = self.engines["unet"]
        return dict(zip(engine.outputs, engine(image=inputs)))["logits"]
