"""Fused stand-in for SAM's image-encoder ``Attention`` (segment_anything and its copies)."""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import get_rel_pos
from torch import nn

from .dispatch import attention
from .wrapper import FusedAttention


def decomposed_rel_pos(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's bias rows from unscaled queries (B, heads, H * W, D): ``rel_h`` (B, heads, N, H) and
    ``rel_w`` (B, heads, N, W), whose sum over each key's (row, column) is SAM's full bias."""
    height, width = grid
    grid_q = q.unflatten(2, grid)
    rel_h = torch.einsum("bnyxc,ykc->bnyxk", grid_q, get_rel_pos(height, height, rel_pos_h))
    rel_w = torch.einsum("bnyxc,xkc->bnyxk", grid_q, get_rel_pos(width, width, rel_pos_w))
    return rel_h.flatten(2, 3), rel_w.flatten(2, 3)


class FusedSamAttention(FusedAttention):
    """SAM's attention with the decomposed relative-position bias added inside the kernel.

    As in SAM, queries are scaled by ``head_dim ** -0.5`` for the logits while the bias rows
    ``rel_h`` / ``rel_w`` come from the unscaled queries; they cost O(N * (H + W)) and are the only
    bias ever stored. ``dilation > 1`` (global blocks only) makes it the dilated approximation.
    """

    def __init__(self, original: nn.Module, dilation: int = 1) -> None:
        super().__init__(original)
        self.num_heads = original.num_heads
        self.scale = original.scale
        self.use_rel_pos = original.use_rel_pos
        self.dilation = dilation

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, dilation={self.dilation}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # three (B, heads, N, D) views, no copies
        rel_pos = decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, (height, width)) if self.use_rel_pos else None
        out = attention(q, k, v, scale=self.scale, rel_pos=rel_pos, dilation=self.dilation)
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))
