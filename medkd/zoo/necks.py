"""Necks that turn a backbone's multi-scale features into SAM's image embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from medkd.zoo.sam_vit import PROMPT_EMBED_DIM


class PyramidNeck(nn.Module):
    """Features at strides ``s, 2s, 4s, ...`` (finest first) to an ``out_channels`` embedding at stride ``s``.

    The coarsest level, as an embedding (itself when it has ``out_channels`` channels, as TinyViT's own
    neck output does, else a 1x1 convolution and ``LayerNorm2d``), upsampled bilinearly to stride ``s``,
    plus a detail term from a feature-pyramid top-down path: every level projected to ``width``
    channels (1x1 convolution), the coarser sum upsampled 2x and added, then a depthwise 3x3,
    ``LayerNorm2d``, GELU and a 1x1 convolution to ``out_channels`` initialised to zero. So at
    initialisation the embedding is the upsampled coarse one: a student whose trunk starts from the
    teacher's weights starts near the teacher. Upsampling uses fixed scales, so exported graphs stay static.
    """

    def __init__(self, in_channels: list[int], out_channels: int = PROMPT_EMBED_DIM, width: int = 128) -> None:
        super().__init__()
        coarse = in_channels[-1]
        self.base = nn.Identity() if coarse == out_channels else nn.Sequential(nn.Conv2d(coarse, out_channels, 1), LayerNorm2d(out_channels))
        self.lateral = nn.ModuleList(nn.Conv2d(channels, width, 1) for channels in in_channels)
        self.detail = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, groups=width),
            LayerNorm2d(width),
            nn.GELU(),
            nn.Conv2d(width, out_channels, 1),
        )
        nn.init.zeros_(self.detail[-1].weight)
        nn.init.zeros_(self.detail[-1].bias)
        self.scale = float(2 ** (len(in_channels) - 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](features[-1])
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(features[:-1])):
            x = lateral(feature) + F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        base = F.interpolate(self.base(features[-1]), scale_factor=self.scale, mode="bilinear", align_corners=False)
        return base + self.detail(x)
