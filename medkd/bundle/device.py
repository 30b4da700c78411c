"""What this device offers a bundle: ONNX Runtime, TensorRT, and the CUDA GPU's compute capability."""

from __future__ import annotations

import importlib
import importlib.util
import platform
from dataclasses import dataclass

import onnxruntime

from medkd.accelerator import torch_cuda


@dataclass(frozen=True)
class DeviceProfile:
    machine: str
    onnxruntime: str
    tensorrt: str | None
    cuda: str | None
    compute_capability: str | None
    gpu: str | None


def _tensorrt_version() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        return str(importlib.import_module("tensorrt").__version__)
    except Exception:  # noqa: BLE001 - a broken TensorRT install is as good as none for a bundle
        return None


def _gpu() -> dict[str, str | None]:
    """CUDA version, GPU and compute capability from torch.cuda; none without a GPU or without torch (the
    runtime install, which runs no engines: TensorRT engines run through torch's CUDA memory)."""
    if torch_cuda() is None:
        return {"cuda": None, "gpu": None, "compute_capability": None}
    from medkd.runtime.tensorrt import device_info

    return device_info()


def local_device() -> DeviceProfile:
    """This machine, detected with ONNX Runtime, TensorRT and torch.cuda where they are importable."""
    gpu = _gpu()
    return DeviceProfile(platform.machine(), onnxruntime.__version__, _tensorrt_version(), gpu["cuda"], gpu["compute_capability"], gpu["gpu"])
