"""The zoo builds the real architectures with the sizes their papers give."""

from __future__ import annotations

import pytest
import torch
from segment_anything import sam_model_registry

from medkd.zoo import create_model, get_spec, list_models, profile_model

EXPECTED = {"sam-vit-h", "sam-vit-l", "sam-vit-b", "medsam-vit-b", "mobilesam", "litemedsam", "sam-vit-stand-in", "timm-sam", "tinyvit", "tinyvit-256", "unet"}


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def test_every_entry_is_registered_with_its_role() -> None:
    assert set(list_models()) == EXPECTED
    assert set(list_models("student")) == {"timm-sam", "tinyvit", "tinyvit-256", "unet"}


def test_sam_vit_h_and_tinyvit_sizes() -> None:
    vit_h = profile_model(get_spec("sam-vit-h"))
    assert 630e6 < vit_h.encoder_params < 640e6
    assert vit_h.output_shape == (256, 64, 64)
    # SAM's paper: ~3 TMACs for ViT-H at 1024 px, i.e. ~6 TFLOPs.
    assert 5800 < vit_h.encoder_gflops < 6100
    tinyvit = profile_model(get_spec("tinyvit"))
    assert 5e6 < tinyvit.encoder_params < 6.2e6
    # MobileSAM reports 38.2 G multiply-adds for its encoder.
    assert 74 < tinyvit.encoder_gflops < 80


def test_stand_in_teacher_is_real_compression_of_the_256_student() -> None:
    teacher = profile_model(get_spec("sam-vit-stand-in"))
    student = profile_model(get_spec("tinyvit-256"))
    assert teacher.encoder_gflops >= 5 * student.encoder_gflops
    assert teacher.encoder_params > student.encoder_params
    assert teacher.output_shape == student.output_shape == (256, 16, 16)


@pytest.mark.parametrize("name, registry_key", [("sam-vit-b", "vit_b"), ("sam-vit-l", "vit_l"), ("sam-vit-h", "vit_h")])
def test_sam_state_dicts_match_segment_anything(name: str, registry_key: str) -> None:
    with torch.device("meta"):
        ours = get_spec(name).build()
        upstream = sam_model_registry[registry_key]()
    assert shapes(ours) == shapes(upstream)


def test_tinyvit_matches_mobile_sam_vit_t() -> None:
    from mobile_sam import sam_model_registry as mobile_registry

    assert shapes(create_model("tinyvit")) == shapes(mobile_registry["vit_t"]())


def test_litemedsam_layout_gives_64_grid_at_256_px() -> None:
    model = create_model("tinyvit-256", embedding_grid=64)
    with torch.no_grad():
        embedding = model.image_encoder(torch.zeros(1, 3, 256, 256))
    assert embedding.shape == (1, 256, 64, 64)
    assert model.prompt_encoder.image_embedding_size == (64, 64)
    assert model.image_encoder.patch_embed.seq[0].c.weight.shape == (32, 3, 1, 1)


def test_unet_takes_image_and_box_channels() -> None:
    unet = create_model("unet")
    with torch.no_grad():
        logits = unet(torch.zeros(2, 4, 256, 256))
    assert logits.shape == (2, 1, 256, 256)
