"""AOTInductor workloads: the models of a ``.pt2`` package made by ``medkd export aoti``.

The package's encoder was exported for one image at a time; its decoder takes any number of prompts
and points, and a U-Net package any batch. Inputs live on the device the package was compiled for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medkd.artifacts import MANIFEST_NAME
from medkd.bench.inputs import box_prompts, random_array
from medkd.bench.subject import Subject, artifact_id, select_graphs
from medkd.bench.timing import Workload
from medkd.errors import BadInput
from medkd.runtime.aoti import PACKAGE_FILE, AotiSegmenter

EMBEDDING_CHANNELS = 256


def _package(path: Path) -> Path:
    if path.is_file() and path.suffix == ".pt2":
        return path
    if path.is_dir() and (path / MANIFEST_NAME).is_file() and (path / PACKAGE_FILE).is_file():
        return path / PACKAGE_FILE
    raise BadInput(f"--backend aoti takes a .pt2 package or an aoti artifact directory (medkd export aoti), not {path}")


def _inputs(segmenter: AotiSegmenter, batch: int) -> dict[str, dict[str, Any]]:
    size = segmenter.input_size
    if segmenter.family == "unet":
        return {"unet": {"image": random_array([batch, 4, size, size])}}
    if batch != 1:
        raise BadInput("the AOTInductor encoder was exported for one image: use --batch 1 (the decoder then takes one prompt)")
    grid = segmenter.embedding_grid
    coords, labels = box_prompts(batch, size)
    return {
        "encoder": {"image": random_array([1, 3, size, size])},
        "decoder": {"image_embeddings": random_array([1, EMBEDDING_CHANNELS, grid, grid]), "point_coords": coords, "point_labels": labels},
    }


def open_aoti(source: str, batch: int, graphs: list[str] | None) -> Subject:
    """``source`` (``.pt2`` or aoti artifact) as one workload per packaged model."""
    package = _package(Path(source))
    segmenter = AotiSegmenter(package)
    device = segmenter.device
    available = _inputs(segmenter, batch)
    workloads = []
    for name in select_graphs(list(available), graphs):
        tensors = [torch.from_numpy(array).to(device) for array in available[name].values()]
        model = segmenter.models[name]

        def run(model: Any = model, tensors: list[torch.Tensor] = tensors) -> Any:
            with torch.inference_mode():
                output = model(tensors)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return output

        shapes = {key: list(value.shape) for key, value in available[name].items()}
        workloads.append(Workload(name, run, shapes, batch, file=package.name))
    return Subject(segmenter.name, source, "aoti", "fp32", str(device), workloads, artifact_id(package), [f"AOTInductor package compiled for {device}"])
