"""Exported models behind the ``Segmenter`` call contract of ``medkd.evaluation``.

``OnnxSegmenter`` runs an export artifact (ONNX encoder + ``SamOnnxModel``-interface decoder, or the
U-Net graph) with ONNX Runtime on the CPU, taking the same model inputs and prompts as the torch
``Segmenter`` and returning the same low-resolution mask logits, so ``medkd eval`` and
``medkd segment`` post-process them identically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from medkd.export.cpu_lowering import cpu_model
from medkd.export.layout import read_layout
from medkd.export.prompts import prompt_points, select_masks

from medkd.data.prompts import box_mask
from medkd.errors import BadInput
from medkd.evaluation.segmenter import Prompts


def cpu_options(threads: int | None = None) -> ort.SessionOptions:
    """Session options for the CPU execution provider."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Idle ORT threads otherwise spin and take the cores from the pre- and post-processing around them.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def cpu_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU execution provider; a Q/DQ graph is lowered for the CPU's
    integer kernels first (:mod:`medkd.export.cpu_lowering`)."""
    return ort.InferenceSession(cpu_model(path), cpu_options(threads), providers=["CPUExecutionProvider"])


def decoder_feeds(embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs of the ``SamOnnxModel``-interface decoder for prompts on one embedding (no mask input,
    ``orig_im_size`` at the low-resolution mask size)."""
    low_res = 4 * embedding.shape[-1]
    return {
        "image_embeddings": embedding,
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": np.zeros((1, 1, low_res, low_res), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array([low_res, low_res], np.float32),
    }


class ExportedSegmenter:
    """What evaluation needs of a model (name, family, input size, device), for exported graphs."""

    def __init__(self, layout: dict[str, Any], source: str) -> None:
        self.layout = layout
        self.name = layout["model"]["name"]
        self.family = layout["model"]["family"]
        self.input_size = int(layout["preprocessing"]["input_size"])
        self.embedding_grid = layout["model"].get("embedding_grid")
        self.source = source
        self.device = torch.device("cpu")

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


class OnnxSegmenter(ExportedSegmenter):
    """An export artifact run by ONNX Runtime on the CPU."""

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        super().__init__(read_layout(directory), str(directory))
        root = Path(directory)
        graphs = self.layout["graphs"]
        self.sessions = {name: cpu_session(root / graphs[name]["file"], threads) for name in self._needed()}

    def _needed(self) -> tuple[str, ...]:
        return ("unet",) if self.family == "unet" else ("encoder", "decoder")

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.sessions["encoder"].run(["image_embeddings"], {"image": images})[0]

    def decode(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        masks, scores = self.sessions["decoder"].run(["low_res_masks", "iou_predictions"], decoder_feeds(embedding, coords, labels))
        return masks, scores

    def unet(self, inputs: np.ndarray) -> np.ndarray:
        return self.sessions["unet"].run(["logits"], {"image": inputs})[0]
