"""The kernel compiles for an H100 (sm_90) at the benchmark's ViT-H shapes, without a GPU: this
catches what the interpreter lets pass. The other autotune configs are marked slow."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl
from medkd.kernels.flash_kernel import (
    _GPU_CONFIGS,
    _attention_fwd,
    kernel_arguments,
    row_aligned,
    row_block,
)
from medkd.kernels.sam_attention import rel_pos_offsets
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

H100 = GPUTarget("cuda", 90, 32)
H100_SHARED_MEMORY = 232448
POINTER_TYPES = {torch.float16: "*fp16", torch.bfloat16: "*bf16"}


def _specialise(args: tuple, constexprs: dict) -> ASTSource:
    """The source Triton's launcher would compile: integers equal to 1 become constants, and
    pointers and integers divisible by 16 are marked so (as the launcher specialises them)."""
    names = _attention_fwd.__code__.co_varnames[: _attention_fwd.__code__.co_argcount]
    values = dict(zip(names, args, strict=False))  # the constexprs come as keywords
    heuristic_args = {**values, **constexprs}
    constexprs = {**constexprs, "ROW_ALIGNED": row_aligned(heuristic_args), "ROW_BLOCK": row_block(heuristic_args)}
    signature, attrs = {}, {}
    for index, name in enumerate(names):
        value = values.get(name)
        if name in constexprs or (type(value) is int and value == 1):
            signature[name] = "constexpr"
            constexprs.setdefault(name, value)
            continue
        if isinstance(value, torch.Tensor):
            signature[name], aligned = POINTER_TYPES[value.dtype], value.data_ptr() % 16 == 0
        elif isinstance(value, float):
            signature[name], aligned = "fp32", False
        else:
            signature[name], aligned = "i32", value % 16 == 0
        if aligned:
            attrs[(index,)] = [["tt.divisibility", 16]]
    return ASTSource(triton.jit(_attention_fwd), signature, constexprs, attrs)


CONFIGS = [
    pytest.param(
        config,
        id="{BLOCK_M}x{BLOCK_N}".format(**config.kwargs) + f"-w{config.num_warps}-s{config.num_stages}",
        marks=() if index == 0 else pytest.mark.slow,
    )
    for index, config in enumerate(_GPU_CONFIGS)
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize(
    ("batch", "grid", "dilation"),
    [(1, (64, 64), 1), (25, (14, 14), 1), (1, (64, 64), 4)],
    ids=["global", "window", "global-dilated"],
)
def test_compiles_for_h100(
    batch: int, grid: tuple[int, int], dilation: int, config: triton.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every config compiles to Hopper tensor-core code (the first, the default one, in the quick suite)."""
    if not isinstance(tl.standard._sum_combine, JITFunction):
        pytest.skip("triton was imported under TRITON_INTERPRET=1: its own helpers cannot compile")
    monkeypatch.delenv("TRITON_INTERPRET")
    heads, head_dim = 16, 80
    qkv = torch.randn(batch, grid[0] * grid[1], 3, heads, head_dim, dtype=torch.float16)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # the strided views the SAM wrapper passes
    rel_pos_h, rel_pos_w = (torch.randn(2 * size - 1, head_dim, dtype=torch.float16) for size in grid)
    rel_pos = rel_pos_offsets(q, rel_pos_h, rel_pos_w, grid)  # what the patched encoder passes
    _, args, constexprs = kernel_arguments(
        q, k, v, scale=head_dim**-0.5, rel_pos=rel_pos, rel_offsets=True, bias=None, dilation=dilation,
        interpret=False,
    )  # fmt: skip
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    compiled = triton.compile(_specialise(args, {**constexprs, **config.kwargs}), target=H100, options=options)
    assert "wgmma" in compiled.asm["ptx"]  # Hopper tensor cores
    assert compiled.metadata.shared <= H100_SHARED_MEMORY
