"""TinyViT SAM models from ``mobile_sam``: MobileSAM's ``vit_t`` and 256-px LiteMedSAM-style students."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from medkd.zoo.necks import PyramidNeck
from medkd.zoo.sam_vit import PROMPT_EMBED_DIM, build_mask_decoder, build_prompt_encoder

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from mobile_sam.modeling import Sam
    from mobile_sam.modeling.tiny_vit_sam import Conv2d_BN, TinyViT

_TINYVIT_5M = {
    "embed_dims": [64, 128, 160, 320],
    "depths": [2, 2, 6, 2],
    "num_heads": [2, 4, 5, 10],
    "window_sizes": [7, 7, 14, 7],
    "mlp_ratio": 4.0,
    "drop_rate": 0.0,
    "drop_path_rate": 0.0,
    "use_checkpoint": False,
    "mbconv_expand_ratio": 4.0,
    "local_conv_size": 3,
    "layer_lr_decay": 0.8,
}


def _token_map(tokens: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """``(B, H * W, C)`` tokens as a ``(B, C, H, W)`` feature map."""
    height, width = resolution
    return tokens.view(tokens.shape[0], height, width, tokens.shape[-1]).permute(0, 3, 1, 2)


class TinyViTEncoder(TinyViT):
    """``mobile_sam``'s TinyViT whose output grid follows its last stage (upstream fixes 64 x 64)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(_token_map(x, self.layers[-1].input_resolution))


class TinyViTPyramidEncoder(TinyViT):
    """TinyViT whose embedding comes at 4x its trunk's grid: a :class:`PyramidNeck` joins the first
    stage's stride-4 map, the second stage's stride-8 map and TinyViT's own neck output (stride 16)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pyramid = PyramidNeck([self.layers[0].dim, self.layers[1].dim, PROMPT_EMBED_DIM])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        first = self.layers[0]
        for block in first.blocks:
            x = block(x)
        fine = x
        x = first.downsample(x)
        middle = _token_map(x, self.layers[1].input_resolution)
        for layer in self.layers[1:]:
            x = layer(x)
        coarse = self.neck(_token_map(x, self.layers[-1].input_resolution))
        return self.pyramid([fine, middle, coarse])


def _stride_one_patch_embed(encoder: TinyViT) -> None:
    """LiteMedSAM's stem: two 1x1 convolutions, no down-sampling, so 256 px give 64 x 64 embeddings."""
    half = encoder.patch_embed.embed_dim // 2
    encoder.patch_embed.seq = nn.Sequential(
        Conv2d_BN(3, half, 1, 1, 0), nn.GELU(), Conv2d_BN(half, encoder.patch_embed.embed_dim, 1, 1, 0)
    )


def build_tinyvit_sam(img_size: int = 1024, embedding_grid: int | None = None, trunk_grid: int | None = None) -> Sam:
    """TinyViT-5M SAM. ``img_size`` 1024 is MobileSAM's ``vit_t``.

    At 256 px the natural grid is 16 x 16 (MobileSAM's strides); ``embedding_grid=64`` selects
    LiteMedSAM's layout (stride-1 stem), which pairs with a MedSAM / SAM 64 x 64 decoder and loads
    ``lite_medsam.pth``. ``trunk_grid`` at a quarter of ``embedding_grid`` keeps the natural trunk
    (16x fewer tokens than the stride-1 stem) and reaches the embedding grid through a learned
    pyramid neck (:class:`TinyViTPyramidEncoder`).
    """
    grid = embedding_grid or img_size // 16
    trunk = trunk_grid or grid
    if trunk != grid:
        if trunk != img_size // 16 or grid != 4 * trunk:
            raise ValueError(f"a pyramid TinyViT at {img_size} px has a {img_size // 16} trunk and a {img_size // 4} embedding grid")
        encoder = TinyViTPyramidEncoder(img_size=img_size, in_chans=3, num_classes=1000, **_TINYVIT_5M)
    elif grid == img_size // 16:
        encoder = TinyViTEncoder(img_size=img_size, in_chans=3, num_classes=1000, **_TINYVIT_5M)
    elif grid == img_size // 4:
        # Stages then run at the resolutions TinyViT has at 4x the input size.
        encoder = TinyViTEncoder(img_size=4 * img_size, in_chans=3, num_classes=1000, **_TINYVIT_5M)
        _stride_one_patch_embed(encoder)
        encoder.img_size = img_size
    else:
        raise ValueError(f"TinyViT at {img_size} px gives a {img_size // 16} or {img_size // 4} grid, not {grid}")
    return Sam(
        image_encoder=encoder,
        prompt_encoder=build_prompt_encoder(img_size, grid),
        mask_decoder=build_mask_decoder(),
    )
