"""One attention call for the patched modules: the fused Triton kernel where it can run, else
PyTorch's SDPA with the bias materialised, and the plain matmul-softmax graph under ONNX export."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .flash_kernel import flash_attention, supports

# Which path each attention call took, counted for tests and profiles (a dict update per call).
path_counts: dict[str, int] = {"fused": 0, "sdpa": 0, "plain": 0}


def select_path(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """``"plain"`` while exporting to ONNX (TensorRT fuses attention itself), ``"sdpa"`` where the
    forward-only kernel cannot serve (autograd, no GPU and no interpreter, unsupported dtype or
    head dims), else ``"fused"``.

    The rule holds for every size, SAM's 14x14 windows included, and is not decided by timing:
    SDPA would first need the dense (B, heads, N, N) bias built from ``rel_h`` / ``rel_w`` on every
    call (several kernels that write and read B * heads * N^2 values: 31 MB per ViT-H window block
    in fp16, more than q, k and v together), while the kernel reads the O(N * (H + W)) bias rows
    and needs one launch. (The bias depends on the queries, so no bias can be built beforehand.)"""
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


def rows_from_offsets(rel_pos: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Offset tables (B, heads, N, 2H - 1) and (B, heads, N, 2W - 1) of an H x W grid as bias rows
    (B, heads, N, H) and (B, heads, N, W): row ``y'`` of query (y, x) is column y - y' + H - 1."""
    grid_w = (rel_pos[1].shape[-1] + 1) // 2
    rows = []
    for axis, table in enumerate(rel_pos):
        size = (table.shape[-1] + 1) // 2
        token = torch.arange(table.shape[-2], device=table.device)  # built on the device: no host copy
        position = token // grid_w if axis == 0 else token % grid_w
        index = position[:, None] - torch.arange(size, device=table.device) + size - 1
        rows.append(table.gather(-1, index.expand(*table.shape[:-1], size)))
    return rows[0], rows[1]


def dense_bias(
    q: torch.Tensor,
    n_k: int,
    rel_pos: tuple[torch.Tensor, torch.Tensor] | None,
    bias: torch.Tensor | None,
    dilation: int,
    rel_offsets: bool = False,
) -> torch.Tensor | None:
    """The full (B, heads, Nq, Nk) additive bias that the kernel applies without storing it."""
    total = None
    if rel_pos is not None:
        if rel_offsets:
            rel_pos = rows_from_offsets(rel_pos)
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
    rel_offsets: bool = False,
    bias: torch.Tensor | None = None,
    dilation: int = 1,
) -> torch.Tensor:
    """Attention over (B, heads, N, D) inputs with the biases of :func:`flash_attention`, by the
    path :func:`select_path` picks; returns (B, heads, Nq, Dv)."""
    path = select_path(q, k, v)
    path_counts[path] += 1
    if path == "fused":
        return flash_attention(
            q, k, v, scale=scale, rel_pos=rel_pos, rel_offsets=rel_offsets, bias=bias, dilation=dilation
        )
    full_bias = dense_bias(q, k.shape[2], rel_pos, bias, dilation, rel_offsets)
    if path == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=full_bias, scale=scale)
    logits = (q * scale) @ k.transpose(-2, -1)
    if full_bias is not None:
        logits = logits + full_bias
    return logits.softmax(dim=-1) @ v
