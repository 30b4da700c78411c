"""Exported models behind the segmenter call contract (``ExportedSegmenter``), and opening any of them:
export artifact (ONNX Runtime), ``.pt2`` package, TensorRT ``.plan``.

``predict`` takes and gives numpy arrays, which is all the runtime needs (no torch); ``__call__`` takes
and gives torch tensors, as :class:`medkd.runtime.segmenter.Segmenter` does for training and evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medkd.artifacts import MANIFEST_NAME, read_manifest
from medkd.data.prompts import box_mask
from medkd.errors import BadInput
from medkd.runtime.layout import layout_preprocessing
from medkd.runtime.prompts import Prediction, Prompts, mask_choice, prompt_points

if TYPE_CHECKING:
    import torch

EXPORTED_KINDS = ("export", "engines", "aoti")
EXPORTED_SUFFIXES = (".pt2", ".plan")


class ExportedSegmenter:
    """What evaluation needs of a model (name, family, input size, device), for exported graphs."""

    device_name = "cpu"

    def __init__(self, layout: dict[str, Any], source: str) -> None:
        self.layout = layout
        self.name = layout["model"]["name"]
        self.family = layout["model"]["family"]
        self.source = source
        self.preprocessing = layout_preprocessing(layout, source)
        self.embedding_grid = layout["model"].get("embedding_grid")

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    @property
    def device(self) -> torch.device:
        """The torch device the graphs run on (for torch callers; the runtime reads ``device_name``)."""
        import torch

        return torch.device(self.device_name)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """``(B, 256, g, g)`` image embeddings for ``(B, 3, S, S)`` model inputs."""
        raise NotImplementedError

    def decode(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Four low-resolution masks and IoU predictions per prompt on one ``(1, 256, g, g)`` embedding."""
        raise NotImplementedError

    def unet(self, inputs: np.ndarray) -> np.ndarray:
        """``(N, 1, S, S)`` logits for ``(N, 4, S, S)`` inputs."""
        raise NotImplementedError

    def embed(self, images: np.ndarray) -> np.ndarray:
        """What prompts are decoded against, per image of ``(B, 3, S, S)`` float32 model inputs: the image
        embeddings (for a U-Net, which has no encoder of its own, the inputs themselves)."""
        batch = np.ascontiguousarray(images, np.float32)
        return batch if self.family == "unet" else self.encode(batch)

    def predict(self, images: np.ndarray, prompts: list[Prompts]) -> list[Prediction]:
        """Mask logits ``(N_i, M, M)`` and scores for each image's prompts; ``images`` is ``(B, 3, S, S)`` float32."""
        return self.predict_embedded(self.embed(images), prompts)

    def predict_embedded(self, embedded: np.ndarray, prompts: list[Prompts]) -> list[Prediction]:
        """:meth:`predict` on what :meth:`embed` returned, so that one encoding serves many prompts."""
        if self.family == "unet":
            return [Prediction(self._unet(image, p)) for image, p in zip(embedded, prompts)]
        predictions = []
        for embedding, image_prompts in zip(embedded, prompts):
            masks, scores = self.decode(embedding[None], *prompt_points(image_prompts))
            chosen, rows = mask_choice(scores, image_prompts), np.arange(len(masks))
            predictions.append(Prediction(np.ascontiguousarray(masks[rows, chosen]), scores[rows, chosen]))
        return predictions

    def __call__(self, images: torch.Tensor, prompts: list[Prompts]) -> list[torch.Tensor]:
        """Mask logits ``(N_i, M, M)`` for each image's prompts, as ``Segmenter.__call__``."""
        import torch

        return [torch.from_numpy(p.logits) for p in self.predict(images.detach().cpu().numpy(), prompts)]

    def _unet(self, image: np.ndarray, prompts: Prompts) -> np.ndarray:
        if prompts.boxes is None:
            raise BadInput(f"{self.name} is a U-Net: it takes box prompts only")
        channels = np.stack([box_mask(b, self.input_size) for b in prompts.boxes])[:, None]
        inputs = np.concatenate([np.broadcast_to(image, (len(channels), *image.shape)), channels], axis=1)
        return self.unet(np.ascontiguousarray(inputs, np.float32))[:, 0]


def is_exported(path: Path) -> bool:
    """Whether ``path`` is an exported model: an export, engines or aoti artifact, a ``.pt2`` or a ``.plan``."""
    if path.suffix in EXPORTED_SUFFIXES:
        return True
    return path.is_dir() and (path / MANIFEST_NAME).is_file() and read_manifest(path).kind in EXPORTED_KINDS


def open_exported(path: Path) -> ExportedSegmenter:
    """The runtime for ``path``: ONNX Runtime (CPU) for an export directory, AOTInductor for ``.pt2``,
    TensorRT for a ``.plan`` or an engines directory. Each runs on the device it was built for."""
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    kind = None if path.suffix in EXPORTED_SUFFIXES else read_manifest(path).kind
    if path.suffix == ".pt2" or kind == "aoti":
        from medkd.runtime.aoti import PACKAGE_FILE, AotiSegmenter

        return AotiSegmenter(path if path.suffix == ".pt2" else path / PACKAGE_FILE)
    if path.suffix == ".plan" or kind == "engines":
        from medkd.runtime.tensorrt import TensorRTSegmenter

        return TensorRTSegmenter(path.parent if path.suffix == ".plan" else path)
    from medkd.runtime.onnx_runtime import OnnxSegmenter

    return OnnxSegmenter(path)
