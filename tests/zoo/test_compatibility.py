"""``medkd.zoo.compatibility``: which upstream builders a checkpoint loads into, and at which geometry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medkd.cli import run
from medkd.zoo import create_model
from medkd.zoo.compatibility import UPSTREAM, ModelGeometry, model_geometry, upstream_notes

VIT_T = UPSTREAM[0]


def _saved(tmp_path: Path, name: str, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / f"{name}.pt"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("name", "geometry"),
    [
        ("tinyvit", ModelGeometry(1024, 64, 4)),
        ("tinyvit-256", ModelGeometry(256, 16, 4)),
        ("tinyvit-256:embedding_grid=64", ModelGeometry(256, 64, 1)),
        ("sam-vit-stand-in", ModelGeometry(256, 16, 16)),
    ],
)
def test_model_geometry(name: str, geometry: ModelGeometry) -> None:
    assert model_geometry(create_model(name)) == geometry


def test_unet_has_no_geometry_and_fits_no_upstream_builder() -> None:
    model = create_model("unet")
    assert model_geometry(model) is None
    assert upstream_notes(model.state_dict(), None) == []


def test_mobilesam_layout_loads_into_vit_t_unchanged() -> None:
    model = create_model("tinyvit")
    assert upstream_notes(model.state_dict(), model_geometry(model)) == [
        (False, "loads into mobile_sam.sam_model_registry['vit_t'] unchanged (1024 px / 64 x 64 grid, stride-4 stem)")
    ]


def test_256_px_tinyvit_fits_vit_t_by_keys_but_not_its_geometry() -> None:
    model = create_model("tinyvit-256")
    assert upstream_notes(model.state_dict(), model_geometry(model)) == [
        (
            True,
            "fits mobile_sam vit_t by keys, but vit_t runs at 1024 px / 64 x 64 grid, stride-4 stem; this model is "
            "256 px / 16 x 16 grid, stride-4 stem: masks from vit_t would be wrong",
        )
    ]


def test_stride_one_stem_has_vit_t_keys_but_not_its_shapes() -> None:
    model = create_model("tinyvit-256:embedding_grid=64")
    [(warning, line)] = upstream_notes(model.state_dict(), model_geometry(model))
    assert warning
    assert "not its shapes (2 differ: image_encoder.patch_embed.seq.* (2))" in line
    assert line.endswith("it does not load into mobile_sam.sam_model_registry['vit_t']")


def test_missing_head_is_reported_and_not_a_fit() -> None:
    model = create_model("tinyvit")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("image_encoder.head.")}
    [(warning, line)] = upstream_notes(state, model_geometry(model))
    assert warning and "lacks image_encoder.head (2)" in line and "strict=False" in line


def test_sam_vit_b_layout_fits_segment_anything_vit_b() -> None:
    # Shapes of ViT-B, stored as zero-stride tensors: a few bytes on disk, no real weights.
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in create_model("sam-vit-b").state_dict().items()}
    state = {k: torch.zeros(1).expand(shape) for k, shape in shapes.items()}
    assert upstream_notes(state, ModelGeometry(1024, 64, 16)) == [
        (False, "loads into segment_anything.sam_model_registry['vit_b'] unchanged (1024 px / 64 x 64 grid, stride-16 stem)")
    ]


def test_models_check_warns_about_vit_t_geometry(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _saved(tmp_path, "tinyvit-256", create_model("tinyvit-256").state_dict())
    assert run(["models", "check", "tinyvit-256", "--checkpoint", str(path)]) == 0
    captured = capsys.readouterr()
    assert "tinyvit-256.pt loads into tinyvit-256" in captured.out
    assert "warning: fits mobile_sam vit_t by keys, but vit_t runs at 1024 px" in captured.err
    assert "masks from vit_t would be wrong" in captured.err


def test_models_check_says_vit_t_layout_loads_upstream(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _saved(tmp_path, "tinyvit", create_model("tinyvit").state_dict())
    assert run(["models", "check", "tinyvit", "--checkpoint", str(path)]) == 0
    captured = capsys.readouterr()
    assert "loads into mobile_sam.sam_model_registry['vit_t'] unchanged" in captured.out
    assert "warning" not in captured.err


def test_models_check_without_checkpoint_needs_packaged_weights(capsys: pytest.CaptureFixture) -> None:
    assert run(["models", "check", "unet"]) == 2
    assert "unet has no packaged weights: pass --checkpoint" in capsys.readouterr().err
