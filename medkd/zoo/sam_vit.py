"""SAM models with a ViT image encoder (ViT-H/L/B, MedSAM, the stand-in teacher), built from
``segment_anything``'s own modules so that its builders, ``SamPredictor`` and checkpoints apply."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

PROMPT_EMBED_DIM = 256


def build_sam_vit(
    embed_dim: int,
    depth: int,
    num_heads: int,
    global_attn_indexes: tuple[int, ...],
    img_size: int = 1024,
    patch_size: int = 16,
    window_size: int = 14,
) -> Sam:
    """A SAM with the given ViT encoder; defaults are those of ``segment_anything.build_sam``."""
    grid = img_size // patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed_dim,
            img_size=img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(global_attn_indexes),
            window_size=window_size,
            out_chans=PROMPT_EMBED_DIM,
        ),
        prompt_encoder=build_prompt_encoder(img_size, grid),
        mask_decoder=build_mask_decoder(),
    )


def build_prompt_encoder(img_size: int, grid: int) -> PromptEncoder:
    """SAM's prompt encoder for an ``img_size`` input whose embeddings are ``grid`` x ``grid``."""
    return PromptEncoder(
        embed_dim=PROMPT_EMBED_DIM,
        image_embedding_size=(grid, grid),
        input_image_size=(img_size, img_size),
        mask_in_chans=16,
    )


def build_mask_decoder() -> MaskDecoder:
    """SAM's mask decoder (two-way transformer, three multimask outputs), the same in every SAM."""
    return MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=PROMPT_EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
