"""Checkpoints load only as plain state dicts, verified, with readable mismatch reports (exit 2)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from medkd.artifacts import sha256_file
from medkd.cli import run
from medkd.zoo import create_model, load_model, save_model_artifact


@pytest.fixture(scope="module")
def tinyvit_256_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "student.pth"
    torch.save(create_model("tinyvit-256").state_dict(), path)
    return path


def check(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    code = run(["models", "check", *args])
    return code, capsys.readouterr().err


@pytest.mark.slow
def test_sam_vit_b_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    original = create_model("sam-vit-b")
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(original.state_dict(), path)
    loaded = create_model("sam-vit-b", checkpoint=path, sha256=sha256_file(path))
    image = torch.rand(1, 3, 1024, 1024)
    with torch.no_grad():
        expected = original.image_encoder(image)
        actual = loaded.image_encoder(image)
        sparse, dense = loaded.prompt_encoder(points=None, boxes=torch.tensor([[100.0, 200.0, 500.0, 700.0]]), masks=None)
        masks_a, iou_a = original.mask_decoder(expected, original.prompt_encoder.get_dense_pe(), sparse, dense, False)
        masks_b, iou_b = loaded.mask_decoder(actual, loaded.prompt_encoder.get_dense_pe(), sparse, dense, False)
    assert torch.equal(expected, actual)
    assert torch.equal(masks_a, masks_b) and torch.equal(iou_a, iou_b)


def test_artifact_round_trip_keeps_kwargs_and_weights(tmp_path: Path) -> None:
    model = create_model("tinyvit-256", embedding_grid=64)
    manifest = save_model_artifact(model, tmp_path / "run", name="tinyvit-256", kind="student", model_kwargs={"embedding_grid": 64})
    loaded = load_model(tmp_path / "run")
    assert manifest.id.startswith("student-")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert loaded.prompt_encoder.image_embedding_size == (64, 64)


def test_good_checkpoint_passes_check(capsys: pytest.CaptureFixture, tinyvit_256_file: Path) -> None:
    assert run(["models", "check", "tinyvit-256", "--checkpoint", str(tinyvit_256_file)]) == 0
    assert "loads into tinyvit-256" in capsys.readouterr().out


def test_wrong_sha256_is_refused(capsys: pytest.CaptureFixture, tinyvit_256_file: Path) -> None:
    code, err = check(capsys, "tinyvit-256", "--checkpoint", str(tinyvit_256_file), "--sha256", "0" * 64)
    assert code == 2
    assert "checksum mismatch" in err and "0" * 64 in err


def test_renamed_keys_are_reported_grouped(capsys: pytest.CaptureFixture, tinyvit_256_file: Path, tmp_path: Path) -> None:
    state = torch.load(tinyvit_256_file, weights_only=True)
    renamed = {key.replace("mask_decoder.", "decoder."): value for key, value in state.items()}
    path = tmp_path / "renamed.pth"
    torch.save(renamed, path)
    code, err = check(capsys, "tinyvit-256", "--checkpoint", str(path))
    assert code == 2
    assert "missing keys" in err and "unexpected keys" in err
    assert "mask_decoder.transformer.layers.* (" in err  # block indices folded into one group
    assert len(err.splitlines()) <= 4  # grouped, not a wall of text


def test_misshaped_keys_are_reported(capsys: pytest.CaptureFixture, tinyvit_256_file: Path, tmp_path: Path) -> None:
    state = torch.load(tinyvit_256_file, weights_only=True)
    state["mask_decoder.iou_token.weight"] = torch.zeros(2, 128)
    path = tmp_path / "misshaped.pth"
    torch.save(state, path)
    code, err = check(capsys, "tinyvit-256", "--checkpoint", str(path))
    assert code == 2
    assert "1 mis-shaped keys: mask_decoder.iou_token.weight (model [1, 256], checkpoint [2, 128])" in err


class Payload:
    """A custom class: loading it would need arbitrary unpickling."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_with_custom_class_is_refused(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": Payload()}, path, pickle_module=pickle)
    code, err = check(capsys, "unet", "--checkpoint", str(path))
    captured = capsys.readouterr()
    assert code == 2
    assert "needs arbitrary unpickling and is refused" in err
    assert "this must never run" not in captured.out


def test_not_a_checkpoint_is_refused(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    code, err = check(capsys, "unet", "--checkpoint", str(path))
    assert code == 2 and "not a readable PyTorch checkpoint" in err
