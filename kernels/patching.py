"""Swap the attention modules of built SAM / TinyViT encoders for the fused ones, and back."""

from __future__ import annotations

from torch import nn

from .sam_attention import FusedSamAttention
from .tinyvit_attention import FusedTinyViTAttention
from .wrapper import FusedAttention

# Matched by defining module and class name: segment_anything's encoder, mobile_sam's copy of it, TinyViT.
_SAM_ATTENTION = {
    ("segment_anything.modeling.image_encoder", "Attention"),
    ("mobile_sam.modeling.image_encoder", "Attention"),
}
_TINYVIT_ATTENTION = {("mobile_sam.modeling.tiny_vit_sam", "Attention")}


def _fused(child: nn.Module, parent: nn.Module, dilation: int, tinyvit: bool) -> FusedAttention | None:
    kind = (type(child).__module__, type(child).__qualname__)
    if kind in _SAM_ATTENTION:
        is_global = getattr(parent, "window_size", None) == 0
        return FusedSamAttention(child, dilation=dilation if is_global else 1)
    if tinyvit and kind in _TINYVIT_ATTENTION:
        return FusedTinyViTAttention(child)
    return None


def patch(model: nn.Module, dilation: int = 1, tinyvit: bool = False) -> int:
    """Replace every SAM image-encoder attention module inside ``model`` (and TinyViT's, with
    ``tinyvit=True``) by its fused stand-in (same parameters, same state dict); return how many were
    replaced.

    TinyViT's windows are small (49 or 196 tokens) and its encoders patched ran no faster on an H200
    (fp16, batch 1: LiteMedSAM 0.83x, MobileSAM 0.99x; ``benchmarks/kernels.py``), so they are
    opt-in.

    ``dilation > 1`` opts SAM's global-attention blocks into dilated attention (each head group
    attends to every ``dilation``-th key): faster, but an approximation; windowed blocks stay exact.
    The kernel is forward-only: where autograd records a graph, the stand-ins compute the same with
    SDPA, so run inference under ``torch.no_grad()`` / ``torch.inference_mode()`` for the speed-up.
    """
    if dilation < 1:
        raise ValueError(f"dilation must be at least 1, got {dilation}")
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            fused = _fused(child, parent, dilation, tinyvit)
            if fused is not None:
                setattr(parent, name, fused)
                count += 1
    return count


def unpatch(model: nn.Module) -> int:
    """Put back the original attention modules (the same objects) that :func:`patch` replaced;
    return how many were restored."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FusedAttention):
                setattr(parent, name, child.restore())
                count += 1
    return count
