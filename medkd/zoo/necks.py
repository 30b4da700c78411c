"""Necks that turn a backbone's multi-scale features into SAM's image embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from medkd.zoo.sam_vit import PROMPT_EMBED_DIM


class PyramidNeck(nn.Module):
    """Features at strides ``s, 2s, 4s, ...`` (finest first) to a ``out_channels`` embedding at stride ``s``.

    A feature-pyramid top-down path: every level projected to ``width`` channels (1x1 convolution), the
    coarser sum upsampled 2x (bilinear, a fixed scale so the exported graph stays static) and added;
    then a depthwise 3x3, a 1x1 to ``out_channels`` and ``LayerNorm2d``, as SAM's own neck ends.
    """

    def __init__(self, in_channels: list[int], out_channels: int = PROMPT_EMBED_DIM, width: int = 128) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(channels, width, 1) for channels in in_channels)
        self.refine = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, groups=width),
            LayerNorm2d(width),
            nn.GELU(),
            nn.Conv2d(width, out_channels, 1),
            LayerNorm2d(out_channels),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](features[-1])
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(features[:-1])):
            x = lateral(feature) + F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.refine(x)
