"""The Triton kernel against a float64 reference, on fresh random inputs every run."""

from __future__ import annotations

import pytest
import torch
from attention_reference import reference_attention, rel_error
from medkd.kernels import attention, flash_attention
from medkd.kernels.dispatch import select_path

TOLERANCE = {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 1e-2}
DTYPES = list(TOLERANCE)


def _inputs(grid: tuple[int, int], head_dim: int, dtype: torch.dtype, batch: int = 2, heads: int = 2):
    n = grid[0] * grid[1]
    q, k, v = (torch.randn(batch, heads, n, head_dim).to(dtype) for _ in range(3))
    rel_h = torch.randn(batch, heads, n, grid[0]).to(dtype)
    rel_w = torch.randn(batch, heads, n, grid[1]).to(dtype)
    return q, k, v, rel_h, rel_w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("grid", "head_dim"),
    # odd sizes; head dims split 64 + 16 (80) and 32 + 16 masked (40); key rows a block wide (3, 16)
    [((5, 7), 8), ((5, 7), 80), ((7, 3), 40), ((3, 16), 16)],
)
def test_decomposed_rel_pos(grid: tuple[int, int], head_dim: int, dtype: torch.dtype) -> None:
    q, k, v, rel_h, rel_w = _inputs(grid, head_dim, dtype)
    out = flash_attention(q, k, v, scale=head_dim**-0.5, rel_pos=(rel_h, rel_w))
    ref = reference_attention(q, k, v, head_dim**-0.5, rel_h, rel_w)
    assert out.dtype == dtype and out.shape == ref.shape
    assert rel_error(out, ref) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_bias_and_strided_inputs(dtype: torch.dtype) -> None:
    """A (heads, N, N) bias shared by the batch, and q / k / v as views into one packed tensor."""
    batch, tokens, heads, head_dim = 3, 19, 2, 8
    packed = torch.randn(batch, tokens, 3, heads, head_dim).to(dtype)
    q, k, v = packed.permute(2, 0, 3, 1, 4).unbind(0)
    bias = torch.randn(1, heads, tokens, tokens).to(dtype)
    out = flash_attention(q, k, v, scale=0.3, bias=bias)
    assert rel_error(out, reference_attention(q, k, v, 0.3, bias=bias)) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dilation", [2, 3])
def test_dilated_keys(dilation: int, dtype: torch.dtype) -> None:
    q, k, v, rel_h, rel_w = _inputs((5, 7), 8, dtype, heads=4)
    out = flash_attention(q, k, v, scale=0.35, rel_pos=(rel_h, rel_w), dilation=dilation)
    ref = reference_attention(q, k, v, 0.35, rel_h, rel_w, dilation=dilation)
    assert rel_error(out, ref) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dilation", [1, 3])
def test_pytorch_fallback_matches_kernel(monkeypatch: pytest.MonkeyPatch, dilation: int) -> None:
    """Without a GPU or the interpreter, ``attention`` takes SDPA with the materialised bias."""
    q, k, v, rel_h, rel_w = _inputs((4, 5), 8, torch.float32, heads=3)
    bias = torch.randn(1, 3, 20, 20)
    assert select_path(q, k, v) == "fused"
    fused = attention(q, k, v, scale=0.3, rel_pos=(rel_h, rel_w), bias=bias, dilation=dilation)
    monkeypatch.delenv("TRITON_INTERPRET")
    assert select_path(q, k, v) == "sdpa"
    fallback = attention(q, k, v, scale=0.3, rel_pos=(rel_h, rel_w), bias=bias, dilation=dilation)
    ref = reference_attention(q, k, v, 0.3, rel_h, rel_w, bias, dilation)
    assert rel_error(fused, ref) <= 1e-3 and rel_error(fallback, ref) <= 1e-3


def test_rejects_bad_dilation() -> None:
    q, k, v, rel_h, rel_w = _inputs((1, 2), 8, torch.float32)
    with pytest.raises(ValueError, match="dilation"):
        flash_attention(q, k, v, scale=1.0, dilation=3)
