"""One attention call for the patched modules: the fused Triton kernel where it can run, else
PyTorch's SDPA with the bias materialised, and the plain matmul-softmax graph under ONNX export."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .flash_kernel import flash_attention, supports


def select_path(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """``"plain"`` while exporting to ONNX (TensorRT fuses attention itself), ``"sdpa"`` where the
    forward-only kernel cannot serve (autograd, no GPU and no interpreter, unsupported dtype or
    head dims), else ``"fused"``."""
    if torch.onnx.is_in_onnx_export():
        return "plain"
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    return "fused" if not needs_grad and supports(q, v) else "sdpa"


def dilation_mask(heads: int, n_k: int, dilation: int, like: torch.Tensor) -> torch.Tensor:
    """Additive (heads, 1, n_k) mask keeping key ``j`` for head ``h`` iff ``j % dilation == h % dilation``."""
    keep = (
        torch.arange(n_k, device=like.device) % dilation
        == (torch.arange(heads, device=like.device) % dilation)[:, None]
    )
    zero = torch.zeros((), dtype=like.dtype, device=like.device)
    return torch.where(keep, zero, float("-inf"))[:, None, :]


def dense_bias(
    q: torch.Tensor,
    n_k: int,
    rel_pos: tuple[torch.Tensor, torch.Tensor] | None,
    bias: torch.Tensor | None,
    dilation: int,
) -> torch.Tensor | None:
    """The full (B, heads, Nq, Nk) additive bias that the kernel applies without storing it."""
    total = None
    if rel_pos is not None:
        rel_h, rel_w = rel_pos
        total = (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2)
    if bias is not None:
        total = bias if total is None else total + bias
    if dilation > 1:
        mask = dilation_mask(q.shape[1], n_k, dilation, q)
        total = mask if total is None else total + mask
    return None if total is None else total.to(q.dtype)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    rel_pos: tuple[torch.Tensor, torch.Tensor] | None = None,
    bias: torch.Tensor | None = None,
    dilation: int = 1,
) -> torch.Tensor:
    """Attention over (B, heads, N, D) inputs with the biases of :func:`flash_attention`, by the
    path :func:`select_path` picks; returns (B, heads, Nq, Dv)."""
    path = select_path(q, k, v)
    if path == "fused":
        return flash_attention(q, k, v, scale=scale, rel_pos=rel_pos, bias=bias, dilation=dilation)
    full_bias = dense_bias(q, k.shape[2], rel_pos, bias, dilation)
    if path == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=full_bias, scale=scale)
    logits = (q * scale) @ k.transpose(-2, -1)
    if full_bias is not None:
        logits = logits + full_bias
    return logits.softmax(dim=-1) @ v
