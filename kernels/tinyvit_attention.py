"""Fused stand-in for TinyViT's window ``Attention`` (mobile_sam)."""

from __future__ import annotations

import torch
from torch import nn

from .dispatch import attention
from .wrapper import FusedAttention


class FusedTinyViTAttention(FusedAttention):
    """TinyViT's attention with its learned bias added inside the kernel.

    The kernel gets the gathered (heads, N, N) bias ``attention_biases[:, attention_bias_idxs]``,
    shared by every window and image of the batch (N is a window: 49 or 196 tokens). It is gathered
    from the parameter on every call, in the queries' dtype, never from the ``ab`` cache that eval
    mode fills: that one goes stale when the biases change after ``.eval()``, and some TinyViT
    versions leave it FP32 after a later ``.half()``.
    """

    def __init__(self, original: nn.Module) -> None:
        super().__init__(original)
        self.num_heads = original.num_heads
        self.scale = original.scale
        self.key_dim = original.key_dim
        self.d = original.d
        self.dh = original.dh

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(batch, tokens, self.num_heads, -1)
        q, k, v = (t.transpose(1, 2) for t in qkv.split([self.key_dim, self.key_dim, self.d], dim=3))
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)
        out = attention(q, k, v, scale=self.scale, bias=bias[None])
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, self.dh))
