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


def _offset_tables(q: torch.Tensor, grid: tuple[int, int], dtype: torch.dtype):
    """Offset tables as the SAM wrapper builds them, and the bias rows they stand for."""
    from medkd.kernels.dispatch import rows_from_offsets
    from medkd.kernels.sam_attention import rel_pos_offsets

    head_dim = q.shape[-1]
    rel_pos_h, rel_pos_w = (torch.randn(2 * size - 1, head_dim).to(dtype) for size in grid)
    tables = rel_pos_offsets(q, rel_pos_h, rel_pos_w, grid)
    return tables, rows_from_offsets(tables), (rel_pos_h, rel_pos_w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("grid", "dilation"),
    # one-hot gather (5x7), a key block per key row (3x16: ROW_BLOCK in the interpreter's 16x16 blocks),
    # dilated keys
    [((5, 7), 1), ((3, 16), 1), ((4, 5), 2)],
)
def test_offset_tables(grid: tuple[int, int], dilation: int, dtype: torch.dtype) -> None:
    """``rel_offsets=True`` (what the SAM wrapper passes) gives the same as the bias rows it stands for."""
    q, k, v, _, _ = _inputs(grid, 40, dtype, heads=2)
    tables, (rel_h, rel_w), _ = _offset_tables(q, grid, dtype)
    out = flash_attention(q, k, v, scale=40**-0.5, rel_pos=tables, rel_offsets=True, dilation=dilation)
    ref = reference_attention(q, k, v, 40**-0.5, rel_h, rel_w, dilation=dilation)
    assert rel_error(out, ref) <= TOLERANCE[dtype]


@pytest.mark.parametrize("trained_for", [None, 9], ids=["same-size", "resized"])
def test_offset_rows_match_sam(trained_for: int | None) -> None:
    """The rows gathered from the offset tables are SAM's own ``get_rel_pos`` + einsum terms, also
    where the tables were trained for another size and get resized."""
    from medkd.kernels.dispatch import rows_from_offsets
    from medkd.kernels.sam_attention import rel_pos_offsets
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    grid, head_dim = (3, 5), 8
    q = torch.randn(2, 2, 15, head_dim, dtype=torch.float64)
    rel_pos_h, rel_pos_w = (torch.randn(trained_for or 2 * size - 1, head_dim, dtype=torch.float64) for size in grid)
    rel_h, rel_w = rows_from_offsets(rel_pos_offsets(q, rel_pos_h, rel_pos_w, grid))
    zeros = torch.zeros(4, 15, 15, dtype=torch.float64)
    sam = add_decomposed_rel_pos(zeros, q.flatten(0, 1), rel_pos_h, rel_pos_w, grid, grid)
    ours = (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2).flatten(0, 1)
    assert torch.allclose(ours, sam, atol=1e-12)
