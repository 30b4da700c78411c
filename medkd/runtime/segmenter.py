"""Uniform prompted inference over the model families medkd evaluates.

A :class:`Segmenter` takes a batch of model inputs (``(B, 3, S, S)``, from ``Geometry.image_to_model``)
and, per image, box or point prompts in model pixels, and returns mask logits per prompt. SAM-family
models run encoder, prompt encoder and decoder (single mask for boxes; for a single point the best of
SAM's three masks by predicted IoU, as ``SamPredictor`` users do); U-Nets take the image plus a
box channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medkd.data.preprocessing import Preprocessing
from medkd.data.prompts import box_mask
from medkd.errors import BadInput
from medkd.runtime.exported import ExportedSegmenter, is_exported, open_exported
from medkd.runtime.prompts import Prediction, Prompts
from medkd.zoo import create_model, default_preprocessing, get_spec, load_model, model_preprocessing
from medkd.zoo.artifact import artifact_model_ref


@dataclass
class Segmenter:
    """A model with what evaluation needs to know about it."""

    name: str
    family: str
    module: nn.Module
    source: str
    device: torch.device
    preprocessing: Preprocessing

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, prompts: list[Prompts]) -> list[torch.Tensor]:
        """Mask logits ``(N_i, M, M)`` for each image's prompts (``M`` is the model's output size)."""
        return [logits for logits, _ in self._forward(images, prompts)]

    @torch.inference_mode()
    def predict(self, images: np.ndarray, prompts: list[Prompts]) -> list[Prediction]:
        """:meth:`__call__` on numpy arrays, with SAM's predicted IoU of each mask as its score."""
        return _predictions(self._forward(_tensor_of(images), prompts))

    @torch.inference_mode()
    def embed(self, images: np.ndarray) -> np.ndarray:
        """What prompts are decoded against, per image of ``(B, 3, S, S)`` model inputs: the image
        embeddings (for a U-Net the inputs themselves), as float32 numpy."""
        return self._encode(_tensor_of(images).to(self.device)).float().cpu().numpy()

    @torch.inference_mode()
    def predict_embedded(self, embedded: np.ndarray, prompts: list[Prompts]) -> list[Prediction]:
        """:meth:`predict` on what :meth:`embed` returned, so that one encoding serves many prompts."""
        return _predictions(self._decode(_tensor_of(embedded).to(self.device), prompts))

    def _forward(self, images: torch.Tensor, prompts: list[Prompts]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return self._decode(self._encode(images.to(self.device)), prompts)

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.family == "unet" else self.module.image_encoder(images)

    def _decode(self, embedded: torch.Tensor, prompts: list[Prompts]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        if self.family == "unet":
            return [(self._unet(image, p), None) for image, p in zip(embedded, prompts)]
        return [self._sam(embedding[None], p) for embedding, p in zip(embedded, prompts)]

    def _tensor(self, array: np.ndarray | None, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
        return None if array is None else torch.as_tensor(array, dtype=dtype, device=self.device)

    def _sam(self, embedding: torch.Tensor, prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
        sam = self.module
        points = None
        if prompts.point_coords is not None:
            points = (self._tensor(prompts.point_coords), self._tensor(prompts.point_labels, torch.int64))
        sparse, dense = sam.prompt_encoder(points=points, boxes=self._tensor(prompts.boxes), masks=None)
        single_point = prompts.boxes is None and prompts.point_coords.shape[1] == 1
        masks, scores = sam.mask_decoder(
            image_embeddings=embedding,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=single_point,
        )
        rows, best = torch.arange(len(masks), device=masks.device), scores.argmax(dim=1)
        return masks[rows, best], scores[rows, best]

    def _unet(self, image: torch.Tensor, prompts: Prompts) -> torch.Tensor:
        if prompts.boxes is None:
            raise BadInput(f"{self.name} is a U-Net: it takes box prompts only")
        channels = torch.stack([self._tensor(box_mask(b, self.input_size)) for b in prompts.boxes])[:, None]
        inputs = torch.cat([image[None].expand(len(channels), -1, -1, -1), channels], dim=1)
        return self.module(inputs)[:, 0]


def _tensor_of(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, np.float32))


def _predictions(outputs: list[tuple[torch.Tensor, torch.Tensor | None]]) -> list[Prediction]:
    return [Prediction(logits.float().cpu().numpy(), None if scores is None else scores.float().cpu().numpy()) for logits, scores in outputs]


def wrap_module(module: nn.Module, name: str, preprocessing: Preprocessing, device: torch.device) -> Segmenter:
    """A live (training) model of zoo architecture ``name`` as a segmenter running ``preprocessing``."""
    return Segmenter(name, get_spec(name).family, module.eval().to(device), name, device, preprocessing)


def load_segmenter(reference: str, checkpoint: str | None = None, device: str = "auto") -> Segmenter | ExportedSegmenter:
    """A zoo model name (with an optional checkpoint), a medkd model artifact directory, or an exported
    model: an export artifact (ONNX Runtime), a ``.pt2`` AOTInductor package or a TensorRT ``.plan``."""
    if is_exported(Path(reference)):
        if checkpoint is not None:
            raise BadInput("--checkpoint applies to zoo names, not to exported models")
        return open_exported(Path(reference))
    chosen = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device)
    if Path(reference).is_dir():
        if checkpoint is not None:
            raise BadInput("--checkpoint applies to zoo names, not to model artifacts")
        name = artifact_model_ref(reference)[0]
        module = load_model(reference)
        preprocessing = model_preprocessing(reference)
    else:
        name = reference
        module = create_model(reference, checkpoint=checkpoint)
        preprocessing = default_preprocessing(reference)
    spec = get_spec(name)
    return Segmenter(name, spec.family, module.eval().to(chosen), reference, chosen, preprocessing)
