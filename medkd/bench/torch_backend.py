"""PyTorch eager and ``torch.compile`` workloads for zoo names (random or packaged weights) and model artifacts.

The graphs are the modules medkd exports (``medkd.export.graphs``), so every backend times the same
computation: the image encoder, the low-resolution decoder on one box prompt per image, or the U-Net.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medkd.bench.inputs import box_prompts, random_array
from medkd.bench.subject import Subject, artifact_id, select_graphs
from medkd.bench.timing import Workload
from medkd.errors import BadInput
from medkd.export.graphs import ImageEncoder, LowResDecoder, UNetGraph
from medkd.zoo import create_model, get_spec, load_model
from medkd.zoo.artifact import artifact_model_ref

EMBEDDING_CHANNELS = 256


def _load(source: str) -> tuple[str, nn.Module, str | None, list[str]]:
    path = Path(source)
    if path.is_dir():
        name = artifact_model_ref(path)[0]
        return name, load_model(path), artifact_id(path), []
    if path.exists():
        raise BadInput(f"--backend torch takes a zoo name or a model artifact directory, not the file {source} (see --backend ort, aoti or tensorrt)")
    notes = [] if get_spec(source).packaged else ["random weights (zoo name without a checkpoint)"]
    return source, create_model(source), None, notes


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(array).to(device)


def _graphs(module: nn.Module, family: str, size: int, batch: int, device: torch.device) -> dict[str, tuple[nn.Module, dict[str, torch.Tensor]]]:
    if family == "unet":
        return {"unet": (UNetGraph(module), {"image": _tensor(random_array([batch, 4, size, size]), device)})}
    grid = int(module.prompt_encoder.image_embedding_size[0])
    coords, labels = box_prompts(batch, size)
    return {
        "encoder": (ImageEncoder(module), {"image": _tensor(random_array([batch, 3, size, size]), device)}),
        "decoder": (
            LowResDecoder(module),
            {
                "image_embeddings": _tensor(random_array([1, EMBEDDING_CHANNELS, grid, grid]), device),
                "point_coords": _tensor(coords, device),
                "point_labels": _tensor(labels, device),
            },
        ),
    }


def _runner(graph: nn.Module, inputs: dict[str, torch.Tensor], device: torch.device) -> Any:
    def run() -> Any:
        with torch.inference_mode():
            output = graph(*inputs.values())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return output

    return run


def open_torch(source: str, batch: int, graphs: list[str] | None, device: str = "auto", compiled: bool = False) -> Subject:
    """``source`` as PyTorch workloads (``compiled``: each graph through ``torch.compile``)."""
    name, module, identifier, notes = _load(source)
    spec = get_spec(name)
    family = spec.family
    size = int(module.image_encoder.img_size) if family == "sam" else spec.input_size
    chosen = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device)
    module = module.eval().to(chosen)
    available = _graphs(module, family, size, batch, chosen)
    workloads = []
    for graph_name in select_graphs(list(available), graphs):
        graph, inputs = available[graph_name]
        graph = torch.compile(graph) if compiled else graph
        shapes = {key: list(value.shape) for key, value in inputs.items()}
        workloads.append(Workload(graph_name, _runner(graph, inputs, chosen), shapes, batch))
    if compiled:
        notes.append("torch.compile (inductor, default mode): compilation happens in the first warm-up call")
    return Subject(name, source, "torch-compile" if compiled else "torch", "fp32", str(chosen), workloads, identifier, notes)
