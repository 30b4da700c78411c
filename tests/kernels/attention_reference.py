"""Float64 attention computed from first principles, and the error measure the kernels are held to."""

from __future__ import annotations

import torch


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    rel_h: torch.Tensor | None = None,
    rel_w: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    dilation: int = 1,
) -> torch.Tensor:
    """softmax(scale q k^T + rel_h[i, row(j)] + rel_w[i, col(j)] + bias, keys j with (j - h) % dilation == 0) v."""
    q, k, v = q.double(), k.double(), v.double()
    heads, n_k = q.shape[1], k.shape[2]
    logits = scale * torch.einsum("bhid,bhjd->bhij", q, k)
    if rel_h is not None:
        key_w = rel_w.shape[-1]
        key = torch.arange(n_k)
        logits = logits + rel_h.double()[..., key // key_w] + rel_w.double()[..., key % key_w]
    if bias is not None:
        logits = logits + bias.double()
    head = torch.arange(heads)[:, None, None]
    dropped = (torch.arange(n_k)[None, None, :] - head) % dilation != 0
    logits = logits.masked_fill(dropped, float("-inf"))
    return torch.einsum("bhij,bhjd->bhid", logits.softmax(-1), v)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Norm-wise relative error ``||out - ref|| / ||ref||`` in float64; NaN never passes."""
    err = ((out.double() - ref.double()).norm() / ref.double().norm()).item()
    assert err == err, "NaN in output"
    return err
