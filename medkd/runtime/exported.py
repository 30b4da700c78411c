"""Exported models behind the ``Segmenter`` call contract (``ExportedSegmenter``), and opening any of them: export artifact (ONNX Runtime), ``.pt2``, TensorRT ``.plan``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medkd.artifacts import read_manifest
from medkd.data.prompts import box_mask
from medkd.errors import BadInput
from medkd.runtime.prompts import Prompts, prompt_points, select_masks
from medkd.zoo import recorded_preprocessing


class ExportedSegmenter:
    """What evaluation needs of a model (name, family, input size, device), for exported graphs."""

    def __init__(self, layout: dict[str, Any], source: str) -> None:
        self.layout = layout
        self.name = layout["model"]["name"]
        self.family = layout["model"]["family"]
        self.source = source
        self.preprocessing = recorded_preprocessing(layout, source)
        self.embedding_grid = layout["model"].get("embedding_grid")
        self.device = torch.device("cpu")

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    def encode(self, images: np.ndarray) -> np.ndarray:
        """``(B, 256, g, g)`` image embeddings for ``(B, 3, S, S)`` model inputs."""
        raise NotImplementedError

    def decode(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Four low-resolution masks and IoU predictions per prompt on one ``(1, 256, g, g)`` embedding."""
        raise NotImplementedError

    def unet(self, inputs: np.ndarray) -> np.ndarray:
        """``(N, 1, S, S)`` logits for ``(N, 4, S, S)`` inputs."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, prompts: list[Prompts]) -> list[torch.Tensor]:
        """Mask logits ``(N_i, M, M)`` for each image's prompts, as ``Segmenter.__call__``."""
        batch = images.detach().cpu().numpy().astype(np.float32, copy=False)
        if self.family == "unet":
            return [torch.from_numpy(self._unet(image, p)) for image, p in zip(batch, prompts)]
        embeddings = self.encode(batch)
        results = []
        for embedding, image_prompts in zip(embeddings, prompts):
            coords, labels = prompt_points(image_prompts)
            masks, scores = self.decode(embedding[None], coords, labels)
            results.append(torch.from_numpy(np.ascontiguousarray(select_masks(masks, scores, image_prompts))))
        return results

    def _unet(self, image: np.ndarray, prompts: Prompts) -> np.ndarray:
        if prompts.boxes is None:
            raise BadInput(f"{self.name} is a U-Net: it takes box prompts only")
        channels = np.stack([box_mask(b, self.input_size) for b in prompts.boxes])[:, None]
        inputs = np.concatenate([np.broadcast_to(image, (len(channels), *image.shape)), channels], axis=1)
        return self.unet(np.ascontiguousarray(inputs, np.float32))[:, 0]


def open_exported(path: Path) -> ExportedSegmenter:
    """The runtime for ``path``: ONNX Runtime (CPU) for an export directory, AOTInductor for ``.pt2``,
    TensorRT for a ``.plan`` or an engines directory. Each runs on the device it was built for."""
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    kind = None if path.suffix in (".pt2", ".plan") else read_manifest(path).kind
    if path.suffix == ".pt2" or kind == "aoti":
        from medkd.runtime.aoti import PACKAGE_FILE, AotiSegmenter

        return AotiSegmenter(path if path.suffix == ".pt2" else path / PACKAGE_FILE)
    if path.suffix == ".plan" or kind == "engines":
        from medkd.runtime.tensorrt import TensorRTSegmenter

        return TensorRTSegmenter(path.parent if path.suffix == ".plan" else path)
    from medkd.runtime.onnx_runtime import OnnxSegmenter

    return OnnxSegmenter(path)
