"""Fused stand-in for SAM's image-encoder ``Attention`` (segment_anything and its copies)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dispatch import attention, rows_from_offsets
from .wrapper import FusedAttention


def rel_pos_table(rel_pos: torch.Tensor, size: int) -> torch.Tensor:
    """SAM's (2 * size - 1, C) table of one axis, linearly resized as SAM's ``get_rel_pos`` does
    when the parameter was trained for another size."""
    length = 2 * size - 1
    if rel_pos.shape[0] == length:
        return rel_pos
    resized = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=length, mode="linear")
    return resized.reshape(-1, length).permute(1, 0)


def rel_pos_offsets(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Offset tables from unscaled queries (B, heads, H * W, D): ``rel_h`` (B, heads, N, 2H - 1)
    and ``rel_w`` (B, heads, N, 2W - 1), every query against every row of SAM's ``rel_pos_h`` /
    ``rel_pos_w``, in one matmul. SAM's bias for query (y, x) and key (y', x') is
    ``rel_h[..., y - y' + H - 1] + rel_w[..., x - x' + W - 1]`` (``flash_attention(...,
    rel_offsets=True)``).

    SAM's own ``get_rel_pos`` indexes the tables with an index built on the CPU, and moving it to
    the GPU synchronises the stream, twice per attention call; nothing here leaves the queries' device.
    """
    height, width = grid
    table = torch.cat([rel_pos_table(rel_pos_h, height), rel_pos_table(rel_pos_w, width)]).to(q.dtype)
    both = torch.matmul(q, table.t())
    return both[..., : 2 * height - 1], both[..., 2 * height - 1 :]


def decomposed_rel_pos(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's bias rows from unscaled queries (B, heads, H * W, D): ``rel_h`` (B, heads, N, H) and
    ``rel_w`` (B, heads, N, W), whose sum over each key's (row, column) is SAM's full bias (what
    SAM's two einsums compute), gathered on the queries' device from :func:`rel_pos_offsets`."""
    return rows_from_offsets(rel_pos_offsets(q, rel_pos_h, rel_pos_w, grid))


class FusedSamAttention(FusedAttention):
    """SAM's attention with the decomposed relative-position bias added inside the kernel.

    As in SAM, queries are scaled by ``head_dim ** -0.5`` for the logits while the bias comes from
    the unscaled queries: the offset tables of :func:`rel_pos_offsets`, O(N * (H + W)) and the only
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
        rel_pos = rel_pos_offsets(q, self.rel_pos_h, self.rel_pos_w, (height, width)) if self.use_rel_pos else None
        out = attention(q, k, v, scale=self.scale, rel_pos=rel_pos, rel_offsets=True, dilation=self.dilation)
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))
