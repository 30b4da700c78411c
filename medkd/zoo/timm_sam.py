"""SAM with a convolutional ``timm`` backbone (NanoSAM's ResNet18, EdgeSAM's RepViT, ...) and a pyramid neck.

The backbone's feature maps from stride 4 down to its last stage go through a :class:`PyramidNeck` to
SAM's 256-channel embedding at stride 4 (64 x 64 at 256 px, the grid of LiteMedSAM and MedSAM), so
the teacher's prompt encoder and mask decoder apply unchanged.
"""

from __future__ import annotations

import timm
import torch
from segment_anything.modeling import Sam
from torch import nn

from medkd.zoo.necks import PyramidNeck
from medkd.zoo.sam_vit import build_mask_decoder, build_prompt_encoder

EMBEDDING_STRIDE = 4


class TimmEncoder(nn.Module):
    """A ``timm`` backbone (``features_only``, random initialisation) and a pyramid neck."""

    def __init__(self, backbone: str, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size
        probe = timm.create_model(backbone, pretrained=False, features_only=True)
        levels = [i for i, reduction in enumerate(probe.feature_info.reduction()) if reduction >= EMBEDDING_STRIDE]
        if not levels or probe.feature_info.reduction()[levels[0]] != EMBEDDING_STRIDE:
            raise ValueError(f"timm backbone '{backbone}' has no stride-{EMBEDDING_STRIDE} features")
        self.backbone = timm.create_model(backbone, pretrained=False, features_only=True, out_indices=tuple(levels))
        reductions = self.backbone.feature_info.reduction()
        if any(b != 2 * a for a, b in zip(reductions, reductions[1:])):
            raise ValueError(f"timm backbone '{backbone}' has strides {reductions}, not doubling ones")
        self.neck = PyramidNeck(self.backbone.feature_info.channels())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(x))


def build_timm_sam(backbone: str = "resnet18", img_size: int = 256, embedding_grid: int | None = None) -> Sam:
    """A SAM whose image encoder is ``backbone`` with a neck to the stride-4 embedding grid."""
    grid = img_size // EMBEDDING_STRIDE
    if embedding_grid not in (None, grid):
        raise ValueError(f"a timm SAM at {img_size} px has a {grid} x {grid} embedding grid, not {embedding_grid}")
    return Sam(
        image_encoder=TimmEncoder(backbone, img_size),
        prompt_encoder=build_prompt_encoder(img_size, grid),
        mask_decoder=build_mask_decoder(),
    )
