"""Triton flash-attention forward kernel: online softmax with SAM's decomposed relative-position
bias, an optional dense bias, and optionally dilated keys; nothing quadratic is ever stored.

The relative-position bias comes either as rows per key row / column (``rel_h[i, key_row]``,
``rel_w[i, key_col]``) or as SAM's offset tables (``rel_h[i, query_row - key_row + key_h - 1]``,
likewise for columns), which one matmul of the queries with SAM's ``rel_pos_h`` / ``rel_pos_w``
gives directly; the kernel reads either with the same loads, walking the offset tables backwards.

Key ``j`` of a head ``h`` takes part when ``j % dilation == h % dilation`` (dilation 1: all keys),
so each group of heads sees one strided subset of keys and the groups together cover every key
(dilated attention after SAM-Lightening, here on keys only).
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

_LOG2E = tl.constexpr(1.4426950408889634)
# Small blocks in the interpreter keep NumPy work low and make odd sizes cross block edges.
_INTERPRET_BLOCKS = {"BLOCK_M": 16, "BLOCK_N": 16}
# Autotuned per shape on the GPU (the first is the default). BLOCK_N = 64 makes every key block of
# SAM's 64x64 global grid one key row (see ROW_BLOCK); 64x64 with 4 warps suits 196-token windows.
# ptxas (sm_90a) reports no spills for any of them at head dim 80; 128x128 uses 255 registers.
_GPU_CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=4),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128}, num_warps=8, num_stages=2),
]
# The autotuner's key: shapes and flags only, never per-call values, so each shape tunes once.
AUTOTUNE_KEY = ["n_q", "n_k", "key_w", "HEAD_DIM", "REL_POS", "REL_OFFSETS", "HAS_BIAS", "DILATION"]
_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def _attention_fwd(
    Q, K, V, OUT, RH, RW, BIAS,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    stride_rhb, stride_rhh, stride_rhn, stride_rhk,
    stride_rwb, stride_rwh, stride_rwn, stride_rwk,
    stride_bb, stride_bh, stride_bm, stride_bn,
    num_heads, n_q, n_k, key_w, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr,
    REL_POS: tl.constexpr, REL_OFFSETS: tl.constexpr, HAS_BIAS: tl.constexpr, DILATION: tl.constexpr,
    ROW_ALIGNED: tl.constexpr, ROW_BLOCK: tl.constexpr, DOT_DTYPE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    # The head dim is split into a power-of-two part BLOCK_D and a tail BLOCK_T (0: none), masked
    # where they overrun HEAD_DIM: 80 = 64 + 16 wastes nothing, where one 128 block would.
    # Only builtins and reductions over triton's own combine functions: those run in the
    # interpreter even when triton was imported (and its helpers decorated) before TRITON_INTERPRET=1.
    pid_bh = tl.program_id(1)
    b = pid_bh // num_heads
    h = pid_bh % num_heads
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n_q
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    q_rows = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qn
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    o_rows = OUT + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_on
    rh_base = RH + b * stride_rhb + h * stride_rhh + offs_m * stride_rhn
    rw_base = RW + b * stride_rwb + h * stride_rwh + offs_m * stride_rwn
    bias_base = BIAS + b * stride_bb + h * stride_bh + offs_m * stride_bm
    key_h = n_k // key_w
    if REL_OFFSETS:  # column c of the rows is column (query row / col) - c + (key_h / key_w) - 1 of the tables
        rh_base += (offs_m // key_w + key_h - 1) * stride_rhk
        rw_base += (offs_m % key_w + key_w - 1) * stride_rwk
        step_h = -stride_rhk
        step_w = -stride_rwk
    else:
        step_h = stride_rhk
        step_w = stride_rwk

    q = tl.load(q_rows + offs_d[None, :] * stride_qd, mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    q = q.to(DOT_DTYPE)
    acc = tl.full([BLOCK_M, BLOCK_D], 0.0, tl.float32)
    if BLOCK_T > 0:
        offs_t = BLOCK_D + tl.arange(0, BLOCK_T)
        mask_t = offs_t < HEAD_DIM
        q_t = tl.load(q_rows + offs_t[None, :] * stride_qd, mask=mask_m[:, None] & mask_t[None, :], other=0.0)
        q_t = q_t.to(DOT_DTYPE)
        acc_t = tl.full([BLOCK_M, BLOCK_T], 0.0, tl.float32)
    if REL_POS and not ROW_ALIGNED:  # rel[i, c]: rel_h[i, c] for c < key_h, then rel_w[i, c - key_h]
        offs_r = tl.arange(0, BLOCK_R)
        in_h = (offs_r < key_h)[None, :]
        in_w = (offs_r >= key_h)[None, :] & (offs_r < key_h + key_w)[None, :]
        rel_h = tl.load(rh_base[:, None] + offs_r[None, :] * step_h, mask=mask_m[:, None] & in_h, other=0.0)
        rel_w = tl.load(rw_base[:, None] + (offs_r - key_h)[None, :] * step_w, mask=mask_m[:, None] & in_w, other=0.0)
        rel = tl.where(in_h, rel_h, rel_w).to(DOT_DTYPE)
    if REL_POS and ROW_BLOCK:  # every key block is one whole key row: the same rel_w tile for all of them
        rel_w_row = tl.load(
            rw_base[:, None] + tl.arange(0, BLOCK_N)[None, :] * step_w, mask=mask_m[:, None], other=0.0
        ).to(tl.float32) * _LOG2E

    first_key = h % DILATION
    n_keys = (n_k - first_key + DILATION - 1) // DILATION  # keys this head attends to
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.full([BLOCK_M], 0.0, tl.float32)
    for start in range(0, n_keys, BLOCK_N):
        offs_j = start + tl.arange(0, BLOCK_N)
        mask_n = offs_j < n_keys
        keys = first_key + offs_j * DILATION
        mask_mn = mask_m[:, None] & mask_n[None, :]
        k_cols = k_base + keys[None, :] * stride_kn
        v_rows = v_base + keys[:, None] * stride_vn

        k = tl.load(k_cols + offs_d[:, None] * stride_kd, mask=mask_n[None, :] & mask_d[:, None], other=0.0)
        s = tl.dot(q, k.to(DOT_DTYPE), input_precision=DOT_PRECISION)
        if BLOCK_T > 0:
            k_t = tl.load(k_cols + offs_t[:, None] * stride_kd, mask=mask_n[None, :] & mask_t[:, None], other=0.0)
            s = tl.dot(q_t, k_t.to(DOT_DTYPE), s, input_precision=DOT_PRECISION)
        s = s * qk_scale
        if REL_POS:
            if ROW_ALIGNED:  # the key block lies in one key row: one rel_h column, a run of rel_w
                rel_h = tl.load(rh_base + (start // key_w) * step_h, mask=mask_m, other=0.0)
                if ROW_BLOCK:
                    s += rel_h.to(tl.float32)[:, None] * _LOG2E + rel_w_row
                else:
                    rel_w = tl.load(rw_base[:, None] + (keys % key_w)[None, :] * step_w, mask=mask_mn, other=0.0)
                    s += (rel_h.to(tl.float32)[:, None] + rel_w.to(tl.float32)) * _LOG2E
            else:  # gather on the tensor cores: [rel_h | rel_w] times each key's one-hot (row, key_h + col)
                key_row, key_col = (keys // key_w)[None, :], (key_h + keys % key_w)[None, :]
                one_hot = (offs_r[:, None] == key_row) | (offs_r[:, None] == key_col)
                s += tl.dot(rel, one_hot.to(DOT_DTYPE), input_precision=DOT_PRECISION) * _LOG2E
        if HAS_BIAS:
            bias = tl.load(bias_base[:, None] + keys[None, :] * stride_bn, mask=mask_mn, other=0.0)
            s += bias.to(tl.float32) * _LOG2E
        s = tl.where(mask_n[None, :], s, float("-inf"))

        m_new = tl.maximum(m_i, tl.reduce(s, 1, tl.standard._elementwise_max))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.reduce(p, 1, tl.standard._sum_combine)
        p = p.to(V.dtype.element_ty).to(DOT_DTYPE)  # rounded as the inputs are
        v = tl.load(v_rows + offs_d[None, :] * stride_vd, mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        acc = tl.dot(p, v.to(DOT_DTYPE), acc * alpha[:, None], input_precision=DOT_PRECISION)
        if BLOCK_T > 0:
            v_t = tl.load(v_rows + offs_t[None, :] * stride_vd, mask=mask_n[:, None] & mask_t[None, :], other=0.0)
            acc_t = tl.dot(p, v_t.to(DOT_DTYPE), acc_t * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new

    out = (acc / l_i[:, None]).to(OUT.dtype.element_ty)
    tl.store(o_rows + offs_d[None, :] * stride_od, out, mask=mask_m[:, None] & mask_d[None, :])
    if BLOCK_T > 0:
        out_t = (acc_t / l_i[:, None]).to(OUT.dtype.element_ty)
        tl.store(o_rows + offs_t[None, :] * stride_od, out_t, mask=mask_m[:, None] & mask_t[None, :])


def row_aligned(args: dict) -> bool:
    """Whether every key block lies within one row of the key grid (no dilation, rows a whole
    number of blocks wide), so the kernel reads SAM's bias directly instead of gathering it."""
    return args["DILATION"] == 1 and args["key_w"] % args["BLOCK_N"] == 0


def row_block(args: dict) -> bool:
    """Whether every key block is exactly one key row (row-aligned and ``key_w == BLOCK_N``, as for
    SAM's 64x64 global grid): the kernel then loads its ``rel_w`` tile once, not per key block."""
    return row_aligned(args) and args["key_w"] == args["BLOCK_N"]


@functools.cache
def _kernel(interpret: bool) -> triton.KernelInterface:
    """The kernel, decorated when first launched in a mode: Triton picks interpreter or compiler at
    decoration time, so decorating at import would freeze whatever TRITON_INTERPRET was then (and
    many packages import triton early)."""
    kernel = triton.heuristics({"ROW_ALIGNED": row_aligned, "ROW_BLOCK": row_block})(triton.jit(_attention_fwd))
    if interpret:
        return kernel
    return triton.autotune(_GPU_CONFIGS, key=AUTOTUNE_KEY)(kernel)


def interpreting() -> bool:
    """Whether Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``), read when asked."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def supports(q: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether the kernel serves these inputs: equal q and v head dims, and fp16 / bf16 on a CUDA
    device, or fp16 / bf16 / fp32 on the CPU under the interpreter. (fp32 on a GPU would run on
    no tensor cores and spill registers: SDPA does it better.)"""
    if q.shape[-1] != v.shape[-1]:
        return False
    if q.is_cuda:
        return q.dtype in (torch.float16, torch.bfloat16)
    return q.device.type == "cpu" and interpreting() and q.dtype in _TL_DTYPES


def flash_attention(
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
    """``softmax(scale * q @ k^T + bias) @ v`` for ``q, k, v`` of shape (B, heads, N, D), any strides.

    ``rel_pos = (rel_h, rel_w)``, of shapes (B, heads, Nq, key_h) and (B, heads, Nq, key_w), adds
    ``rel_h[..., i, j // key_w] + rel_w[..., i, j % key_w]`` to the logit of query ``i`` and key
    ``j`` (SAM's decomposed relative-position bias, keys in row-major order). With
    ``rel_offsets=True`` they are instead offset tables of shapes (B, heads, N, 2 * key_h - 1) and
    (B, heads, N, 2 * key_w - 1) over a query grid equal to the key grid, and the bias is
    ``rel_h[..., i, row(i) - row(j) + key_h - 1] + rel_w[..., i, col(i) - col(j) + key_w - 1]``
    (see :func:`rel_pos_offsets <medkd.kernels.sam_attention.rel_pos_offsets>`). ``bias`` is a dense
    bias broadcastable to (B, heads, Nq, Nk). Softmax and accumulation run in fp32. Returns
    (B, heads, Nq, D) as a view of a contiguous (B, Nq, heads, D) tensor, ready for the projection.
    """
    interpret = interpreting()
    out, args, constexprs = kernel_arguments(
        q, k, v, scale=scale, rel_pos=rel_pos, rel_offsets=rel_offsets, bias=bias, dilation=dilation,
        interpret=interpret,
    )  # fmt: skip
    batch, heads, n_q, _ = out.shape
    _kernel(interpret)[lambda meta: (triton.cdiv(n_q, meta["BLOCK_M"]), batch * heads)](*args, **constexprs)
    return out


def rel_grid(rel_pos: tuple[torch.Tensor, torch.Tensor], rel_offsets: bool) -> tuple[int, int]:
    """The key grid (key_h, key_w) of relative-position rows or offset tables."""
    sizes = (rel_pos[0].shape[-1], rel_pos[1].shape[-1])
    return tuple((size + 1) // 2 for size in sizes) if rel_offsets else sizes


def kernel_arguments(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    rel_pos: tuple[torch.Tensor, torch.Tensor] | None,
    bias: torch.Tensor | None,
    dilation: int,
    interpret: bool,
    rel_offsets: bool = False,
) -> tuple[torch.Tensor, tuple, dict]:
    """The (empty) output, and the kernel's positional and constexpr arguments but its block sizes
    on a GPU (autotuned), for :func:`flash_attention`'s inputs."""
    batch, heads, n_q, head_dim = q.shape
    n_k = k.shape[2]
    if not 1 <= dilation <= n_k:
        raise ValueError(f"dilation must be in [1, {n_k}], got {dilation}")
    out = torch.empty(batch, n_q, heads, head_dim, dtype=q.dtype, device=q.device).transpose(1, 2)
    if rel_pos is not None:
        rel_h, rel_w = rel_pos
        key_h, key_w = rel_grid(rel_pos, rel_offsets)
        if key_h * key_w != n_k:
            raise ValueError(f"key grid {key_h}x{key_w} does not match {n_k} keys")
        if rel_offsets and (n_q != n_k or rel_h.shape[-1] % 2 == 0 or rel_w.shape[-1] % 2 == 0):
            raise ValueError("offset tables need 2 * size - 1 columns and the query grid equal to the key grid")
    else:
        rel_h = rel_w = q.new_zeros(1, 1, 1, 1)  # never read
        key_h = key_w = 1
    bias_view = bias.expand(batch, heads, n_q, n_k) if bias is not None else rel_h
    block_d = max(16, 1 << (head_dim.bit_length() - 1))  # largest power of two <= head_dim, >= 16
    # The interpreter multiplies bf16 operands as raw bits: give its dots fp32 copies instead.
    dot_dtype = torch.float32 if interpret and q.dtype == torch.bfloat16 else q.dtype
    args = (
        q, k, v, out, rel_h, rel_w, bias_view,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        *rel_h.stride(), *rel_w.stride(), *bias_view.stride(),
        heads, n_q, n_k, key_w, scale * _LOG2E.value,
    )  # fmt: skip
    constexprs = dict(
        HEAD_DIM=head_dim,
        BLOCK_D=block_d,
        BLOCK_T=max(16, triton.next_power_of_2(head_dim - block_d)) if head_dim > block_d else 0,
        BLOCK_R=max(16, triton.next_power_of_2(key_h + key_w)),
        REL_POS=rel_pos is not None,
        REL_OFFSETS=rel_pos is not None and rel_offsets,
        HAS_BIAS=bias is not None,
        DILATION=dilation,
        DOT_DTYPE=_TL_DTYPES[dot_dtype],
        DOT_PRECISION="ieee" if dot_dtype == torch.float32 else "tf32",
        **(_INTERPRET_BLOCKS if interpret else {}),
    )
    return out, args, constexprs
