"""The torch modules that become ONNX / AOTInductor graphs: image encoder, the two decoder flavours, U-Net.

- ``ImageEncoder``: ``image (B, 3, S, S)`` to ``image_embeddings (B, 256, g, g)``.
- ``SamInterfaceDecoder``: ``segment_anything.utils.onnx.SamOnnxModel`` (inputs
  ``image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size``; outputs
  ``masks, iou_predictions, low_res_masks``), so existing SAM ONNX clients work unchanged.
- ``LowResDecoder``: the TensorRT-friendly decoder: no ``orig_im_size`` shape tensor, no mask input,
  low-resolution masks of all four mask tokens out (the host upsamples and picks), a fixed number of
  point slots per prompt padded with label -1.
- ``UNetGraph``: ``image (B, 4, S, S)`` (RGB normalised + box channel) to ``logits (B, 1, S, S)``.
"""

from __future__ import annotations

import contextlib
import types
import warnings
from collections.abc import Callable, Iterator

import torch
from segment_anything.utils.onnx import SamOnnxModel
from torch import nn
from torch.nn import functional as F

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from mobile_sam.modeling.tiny_vit_sam import PatchMerging



def set_gelu_approximate(model: nn.Module) -> int:
    """Switch every ``nn.GELU`` to its tanh approximation (runtimes without ``Erf``); returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.GELU):
            module.approximate = "tanh"
            count += 1
    return count


def _patch_merging_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``mobile_sam``'s ``PatchMerging.forward`` with ``x.shape[0]`` for its ``len(x)`` (a constant when traced)."""
    if x.ndim == 3:
        height, width = self.input_resolution
        x = x.view(x.shape[0], height, width, -1).permute(0, 3, 1, 2)
    x = self.act(self.conv1(x))
    x = self.act(self.conv2(x))
    return self.conv3(x).flatten(2).transpose(1, 2)


def _channels_last_layer_norm(norm: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``LayerNorm2d.forward`` (SAM's neck, TinyViT's, medkd's pyramid) as one ``LayerNormalization`` on
    channels-last values: the same function, which ONNX Runtime runs in one pass instead of two
    ``ReduceMean`` over the channel axis and five element-wise ones (4x faster on a 256 x 64 x 64 map)."""
    channels = (int(norm.weight.shape[0]),)  # a constant of the graph, not a traced shape

    def forward(x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), channels, norm.weight, norm.bias, norm.eps).permute(0, 3, 1, 2)

    return forward


def _patches(model: nn.Module) -> list[tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]]:
    """The modules whose ``forward`` the export replaces, with the replacement: TinyViT's patch
    merging and every ``LayerNorm2d`` (segment_anything's, mobile_sam's and the copies vendored with them)."""
    found = []
    for module in model.modules():
        if isinstance(module, PatchMerging):
            found.append((module, types.MethodType(_patch_merging_forward, module)))
        elif type(module).__name__ == "LayerNorm2d" and all(hasattr(module, name) for name in ("weight", "bias", "eps")):
            found.append((module, _channels_last_layer_norm(module)))
    return found


@contextlib.contextmanager
def traceable(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, TinyViT's patch merging keeps the batch dimension dynamic when traced, and
    ``LayerNorm2d`` traces to ``LayerNormalization``."""
    patched = _patches(model)
    for module, forward in patched:
        module.forward = forward
    try:
        yield model
    finally:
        for module, _ in patched:
            del module.forward


class ImageEncoder(nn.Module):
    """A SAM image encoder on its own."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


class SamInterfaceDecoder(SamOnnxModel):
    """``SamOnnxModel`` with a crop that stays dynamic when traced.

    Upstream crops with ``int(prepadded_size[i])``, which the tracer freezes to the example's
    ``orig_im_size``; slicing with the tensors themselves keeps it a function of the input. Four masks
    per prompt, or with ``single_mask`` the best one (as the SAM notebook exports).
    """

    def __init__(self, sam: nn.Module, single_mask: bool = False) -> None:
        super().__init__(sam, return_single_mask=single_mask)

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        masks = F.interpolate(masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        prepadded = self.resize_longest_image_size(orig_im_size, self.img_size)
        masks = masks[..., : prepadded[0], : prepadded[1]]
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)


class LowResDecoder(SamOnnxModel):
    """Prompt encoder + mask decoder with low-resolution outputs and no shape-tensor input.

    ``point_coords (N, P, 2)`` in model pixels and ``point_labels (N, P)`` (1 foreground, 0 background,
    2 / 3 box corners, -1 padding) for ``N`` prompts on one image embedding; returns
    ``low_res_masks (N, 4, 4g, 4g)`` and ``iou_predictions (N, 4)``.
    """

    def __init__(self, sam: nn.Module) -> None:
        super().__init__(sam, return_single_mask=False)

    @torch.no_grad()
    def forward(  # type: ignore[override]
        self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        prompt_encoder = self.model.prompt_encoder
        sparse = self._embed_points(point_coords, point_labels)
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *image_embeddings.shape[-2:])
        masks, scores = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        return masks, scores


class UNetGraph(nn.Module):
    """The U-Net student as it is (one graph: image plus box channel in, one logit channel out)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.unet(image)
