"""patch / unpatch on small SAM and TinyViT encoders: same results, same state, same objects."""

from __future__ import annotations

import copy

import pytest
import torch
from attention_reference import rel_error
from medkd.kernels import dispatch, patch, unpatch
from medkd.kernels.dispatch import select_path
from medkd.kernels.sam_attention import FusedSamAttention
from medkd.kernels.tinyvit_attention import FusedTinyViTAttention
from mobile_sam.modeling.image_encoder import (
    ImageEncoderViT as MobileSamImageEncoderViT,
)
from mobile_sam.modeling.tiny_vit_sam import TinyViT
from segment_anything.modeling.image_encoder import Attention, ImageEncoderViT
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _sam_encoder(encoder_class: type[nn.Module] = ImageEncoderViT) -> nn.Module:
    """5x5 tokens: a windowed block (3x3 windows, padded) and a global block, random rel-pos."""
    encoder = encoder_class(
        img_size=80, patch_size=16, embed_dim=32, depth=2, num_heads=2, out_chans=16,
        use_rel_pos=True, window_size=3, global_attn_indexes=(1,),
    )  # fmt: skip
    for name, param in encoder.named_parameters():
        if "rel_pos" in name or "pos_embed" in name:
            nn.init.normal_(param, std=0.5)
    return encoder.eval()


def _tinyvit() -> TinyViT:
    """TinyViT stages at 8x8, 4x4 and 4x4 tokens with 3x3 windows (padded), random biases; the last
    stage keeps the resolution, as in MobileSAM, because its width is 320."""
    model = TinyViT(
        img_size=64, embed_dims=[8, 16, 24, 320], depths=[1, 1, 1, 1], num_heads=[1, 2, 3, 10],
        window_sizes=[3, 3, 3, 3],
    )  # fmt: skip
    for name, param in model.named_parameters():
        if "attention_biases" in name:
            nn.init.normal_(param)
    return model.eval()  # after the biases are set: eval mode caches them


def _tinyvit_features(model: TinyViT, x: torch.Tensor) -> torch.Tensor:
    """TinyViT's encoder up to its neck (the neck assumes 1024-pixel inputs)."""
    x = model.patch_embed(x)
    for layer in model.layers:
        x = layer(x)
    return x


@pytest.mark.parametrize("encoder_class", [ImageEncoderViT, MobileSamImageEncoderViT], ids=["sam", "mobile_sam"])
@torch.no_grad()
def test_sam_encoder_patched_matches_unpatched(encoder_class: type[nn.Module]) -> None:
    encoder = _sam_encoder(encoder_class)
    x = torch.randn(2, 3, 80, 80)
    expected = encoder(x)
    originals = [block.attn for block in encoder.blocks]
    state = encoder.state_dict()

    assert patch(encoder) == 2
    assert all(isinstance(block.attn, FusedSamAttention) for block in encoder.blocks)
    assert encoder.state_dict().keys() == state.keys()
    assert all(encoder.state_dict()[key] is not None and encoder.state_dict()[key].equal(state[key]) for key in state)
    assert rel_error(encoder(x), expected) <= 1e-3
    assert patch(encoder) == 0  # already patched

    assert unpatch(encoder) == 2
    assert all(block.attn is original for block, original in zip(encoder.blocks, originals, strict=True))
    assert encoder(x).equal(expected)


@torch.no_grad()
def test_sam_attention_in_low_precision() -> None:
    """Fused SAM attention (global, odd grid) in fp16 / bf16 against SAM's own module in float64."""
    module = Attention(dim=32, num_heads=2, use_rel_pos=True, input_size=(5, 7))
    for param in (module.rel_pos_h, module.rel_pos_w):
        nn.init.normal_(param, std=0.5)
    x = torch.randn(2, 5, 7, 32)
    for dtype in (torch.float16, torch.bfloat16):
        low = copy.deepcopy(module).to(dtype)
        expected = copy.deepcopy(low).double()(x.to(dtype).double())
        assert rel_error(FusedSamAttention(low)(x.to(dtype)), expected) <= 1e-2


@torch.no_grad()
def test_dilated_global_blocks_only() -> None:
    encoder = _sam_encoder()
    x = torch.randn(1, 3, 80, 80)
    patch(encoder, dilation=2)
    assert [block.attn.dilation for block in encoder.blocks] == [1, 2]
    fused = encoder(x)
    unpatch(encoder)
    exact = encoder(x)
    assert 0 < rel_error(fused, exact) < 1  # an approximation: different, but not unrelated
    with pytest.raises(ValueError):
        patch(encoder, dilation=0)


@torch.no_grad()
def test_tinyvit_patched_matches_unpatched() -> None:
    model = _tinyvit()
    x = torch.randn(2, 3, 64, 64)
    expected = _tinyvit_features(model, x)
    assert patch(model) == 0  # opt-in: measured no faster on TinyViT's small windows
    assert patch(model, tinyvit=True) == 3
    assert sum(isinstance(m, FusedTinyViTAttention) for m in model.modules()) == 3
    assert rel_error(_tinyvit_features(model, x), expected) <= 1e-3
    assert unpatch(model) == 3
    assert _tinyvit_features(model, x).equal(expected)


def test_conversions_while_patched_reach_the_originals() -> None:
    """``.to()`` and train / eval on the patched model carry over to the restored modules."""
    model = _tinyvit()
    original = model.layers[1].blocks[0].attn
    patch(model, tinyvit=True)
    model.train().to(torch.bfloat16).eval()
    unpatch(model)
    assert model.layers[1].blocks[0].attn is original and not original.training
    assert original.qkv.weight.dtype == torch.bfloat16 and original.ab.dtype == torch.bfloat16


def test_onnx_export_uses_plain_graph(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exported, the patched encoder takes the plain path: a MatMul / Softmax graph."""
    onnx = pytest.importorskip("onnx")
    paths: list[str] = []

    def recording_select_path(*args: torch.Tensor) -> str:
        paths.append(select_path(*args))
        return paths[-1]

    monkeypatch.setattr(dispatch, "select_path", recording_select_path)
    encoder = _sam_encoder()
    patch(encoder)
    path = tmp_path / "encoder.onnx"
    torch.onnx.export(encoder, (torch.randn(1, 3, 80, 80),), str(path), opset_version=17)
    assert paths and set(paths) == {"plain"}
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"MatMul", "Softmax"} <= ops


@torch.no_grad()
def test_patched_encoder_takes_the_fused_path_in_every_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every attention call of a patched SAM encoder (windowed and global blocks) runs the kernel:
    no fallback to SDPA or the plain graph on the way."""
    encoder = _sam_encoder()
    patch(encoder)
    launches: list[tuple[int, ...]] = []
    kernel = dispatch.flash_attention

    def counting_kernel(q: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        launches.append(tuple(q.shape))
        return kernel(q, *args, **kwargs)

    monkeypatch.setattr(dispatch, "flash_attention", counting_kernel)
    monkeypatch.setattr(dispatch, "path_counts", {"fused": 0, "sdpa": 0, "plain": 0})
    encoder(torch.randn(1, 3, 80, 80))
    assert dispatch.path_counts == {"fused": 2, "sdpa": 0, "plain": 0}
    assert launches == [(4, 2, 9, 16), (1, 2, 25, 16)]  # four padded 3x3 windows, then the 5x5 global grid


class _DeviceRecorder(TorchDispatchMode):
    """Records the device of every tensor that any aten op takes or returns."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten((args, kwargs, out))[0]:
            if isinstance(value, torch.Tensor):
                self.devices.add(value.device.type)
        return out


@torch.no_grad()
def test_fused_sam_attention_keeps_to_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The patched SAM attention builds nothing on the host: SAM's own ``get_rel_pos`` indexes with
    CPU tensors, whose copy to the GPU synchronises the stream, twice per block. Checked on the
    meta device, where any CPU tensor would show, with the kernel stubbed out."""
    monkeypatch.setattr(dispatch, "select_path", lambda *args: "fused")
    monkeypatch.setattr(dispatch, "flash_attention", lambda q, k, v, **kwargs: torch.empty_like(q))
    module = Attention(dim=32, num_heads=2, use_rel_pos=True, input_size=(5, 7)).to("meta")
    x = torch.empty(2, 5, 7, 32, device="meta")
    recorder = _DeviceRecorder()
    with recorder:
        FusedSamAttention(module)(x)
    assert recorder.devices == {"meta"}
    recorder = _DeviceRecorder()
    with recorder:
        module(x)
    assert "cpu" in recorder.devices  # SAM's own path, for contrast


def test_autotune_key_is_the_same_for_every_call() -> None:
    """The autotuner keys on shapes and flags only: two encoder calls with other values (and other
    strides of the same shape) hit the same cache entry, so nothing re-tunes per call."""
    from medkd.kernels.flash_kernel import (
        AUTOTUNE_KEY,
        _attention_fwd,
        kernel_arguments,
    )
    from medkd.kernels.sam_attention import rel_pos_offsets

    names = _attention_fwd.__code__.co_varnames[: _attention_fwd.__code__.co_argcount]
    keys = []
    for packed in (True, False):
        qkv = torch.randn(1, 20, 3, 2, 8)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0) if packed else (t.contiguous() for t in qkv.permute(2, 0, 3, 1, 4))
        tables = rel_pos_offsets(q, torch.randn(7, 8), torch.randn(9, 8), (4, 5))
        _, args, constexprs = kernel_arguments(
            q, k, v, scale=torch.rand(()).item(), rel_pos=tables, rel_offsets=True, bias=None, dilation=1,
            interpret=False,
        )  # fmt: skip
        values = {**dict(zip(names, args, strict=False)), **constexprs}
        keys.append(tuple(values[name] for name in AUTOTUNE_KEY))
    assert keys[0] == keys[1] and all(isinstance(value, (int, bool)) for value in keys[0])
