"""SAM as a trainable module: a batch of model-space images and box prompts in, mask logits out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def decode_boxes(
    sam: nn.Module, embeddings: torch.Tensor, boxes: torch.Tensor, multimask: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution mask logits and IoU estimates for one box per image embedding."""
    sparse, dense = sam.prompt_encoder(points=None, boxes=boxes[:, None, :], masks=None)
    logits, iou = [], []
    # SAM's decoder repeats the image embedding per prompt: decode image by image.
    for i in range(embeddings.shape[0]):
        low_res, scores = sam.mask_decoder(
            image_embeddings=embeddings[i : i + 1],
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse[i : i + 1],
            dense_prompt_embeddings=dense[i : i + 1],
            multimask_output=multimask,
        )
        logits.append(low_res)
        iou.append(scores)
    return torch.cat(logits), torch.cat(iou)


def upscale(low_res: torch.Tensor, size: int) -> torch.Tensor:
    """Low-resolution logits to the square model input size (as ``Sam.postprocess_masks``)."""
    return F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)


class BoxPromptedSam(nn.Module):
    """``forward(batch)`` with ``image`` (normalised, padded) and ``box`` (model pixels)."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        embeddings = self.sam.image_encoder(batch["image"])
        low_res, iou = decode_boxes(self.sam, embeddings, batch["box"])
        return {"logits": upscale(low_res, batch["image"].shape[-1]), "iou": iou, "embeddings": embeddings}


class CachedEmbeddingSam(nn.Module):
    """``forward(batch)`` with cached image embeddings (``target``) and ``box``: the prompt encoder and
    mask decoder alone run (a frozen encoder's teacher adaptation)."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        low_res, iou = decode_boxes(self.sam, batch["target"], batch["box"])
        return {"logits": upscale(low_res, batch["image"].shape[-1]), "iou": iou}
