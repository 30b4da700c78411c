"""Students of 64 x 64 teachers: TinyViT with a 16 x 16 trunk and a pyramid neck, timm backbones, and
their start from the teacher's weights."""

from __future__ import annotations

import pytest
import torch
from medkd.distill.inherit import inherit_encoder

from medkd.zoo import create_model, default_preprocessing
from medkd.zoo.timm_sam import build_timm_sam
from medkd.zoo.tinyvit import build_tinyvit_sam


def test_pyramid_tinyvit_gives_the_teacher_grid_from_a_16x16_trunk() -> None:
    model = create_model("tinyvit-256:embedding_grid=64,trunk_grid=16")
    assert model.image_encoder.layers[-1].input_resolution == (16, 16)  # the trunk: 16x fewer tokens than LiteMedSAM's
    with torch.no_grad():
        assert model.image_encoder(torch.zeros(2, 3, 256, 256)).shape == (2, 256, 64, 64)
    spec = default_preprocessing("tinyvit-256", {"embedding_grid": 64, "trunk_grid": 16})
    assert (spec.embedding_grid, spec.mask_size) == (64, 256)
    with pytest.raises(ValueError, match="16 trunk and a 64 embedding grid"):
        build_tinyvit_sam(256, embedding_grid=32, trunk_grid=16)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv3_large_100"])
def test_timm_student_reaches_the_stride_4_grid(backbone: str) -> None:
    model = build_timm_sam(backbone, img_size=64).eval()
    with torch.no_grad():
        embedding = model.image_encoder(torch.zeros(1, 3, 64, 64))
    assert embedding.shape == (1, 256, 16, 16) and tuple(model.prompt_encoder.image_embedding_size) == (16, 16)
    with pytest.raises(ValueError, match="embedding grid"):
        build_timm_sam(backbone, img_size=64, embedding_grid=4)


def test_student_inherits_the_teacher_encoder_and_its_stem_sees_a_subsampled_image() -> None:
    torch.manual_seed(0)
    teacher = create_model("litemedsam", pretrained=False)
    for module in teacher.image_encoder.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    student = create_model("tinyvit-256:embedding_grid=64,trunk_grid=16")
    counts = inherit_encoder(student, teacher)
    assert counts["centre_taps"] == 2  # the two stem convolutions, 1 x 1 into 3 x 3
    ours, theirs = student.image_encoder.state_dict(), teacher.image_encoder.state_dict()
    trunk = [key for key in theirs if key.startswith("layers.") and key in ours]
    assert trunk and all(torch.equal(ours[key], theirs[key]) for key in trunk)
    assert not any(key.startswith("pyramid.") for key in theirs)  # the neck to 64 x 64 is the student's own
    image = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        expected = teacher.image_encoder.patch_embed(image[:, :, ::4, ::4])
        assert torch.allclose(student.image_encoder.patch_embed(image), expected, atol=1e-5)


def test_pyramid_neck_starts_as_the_upsampled_coarse_embedding() -> None:
    from medkd.zoo.necks import PyramidNeck

    torch.manual_seed(0)
    neck = PyramidNeck([64, 128, 256])
    features = [torch.randn(1, 64, 32, 32), torch.randn(1, 128, 16, 16), torch.randn(1, 256, 8, 8)]
    expected = torch.nn.functional.interpolate(features[-1], scale_factor=4.0, mode="bilinear", align_corners=False)
    assert torch.equal(neck(features), expected)
    neck.detail[-1].weight.data.normal_()
    assert not torch.allclose(neck(features), expected)
