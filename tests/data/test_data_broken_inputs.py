"""A corpus of broken inputs, made here: each is skipped with its reason, nothing crashes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medkd.cli import run
from medkd.data import build_manifest
from medkd.errors import BadInput


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _nifti(path, array, spacing=(1.0, 1.0, 1.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), path)


def _square_mask(shape, value=255):
    mask = np.zeros(shape, np.uint8)
    mask[4:12, 5:14] = value
    return mask


@pytest.fixture()
def corpus(tmp_path):
    """A 2D paired dataset and an MSD dataset, each with one good pair and many broken files."""
    flat = tmp_path / "flat"
    gray = np.random.default_rng(0).integers(0, 255, (20, 24), dtype=np.uint8)
    _png(flat / "images" / "good.png", gray)
    _png(flat / "masks" / "good_mask.png", _square_mask((20, 24)))
    _png(flat / "images" / "truncated.png", gray)
    data = (flat / "images" / "truncated.png").read_bytes()
    (flat / "images" / "truncated.png").write_bytes(data[: len(data) // 2])
    _png(flat / "masks" / "truncated_mask.png", _square_mask((20, 24)))
    _png(flat / "images" / "small.png", gray)
    _png(flat / "masks" / "small_mask.png", _square_mask((10, 24)))
    _png(flat / "images" / "empty.png", gray)
    _png(flat / "masks" / "empty_mask.png", np.zeros((20, 24), np.uint8))
    (flat / "images" / "notes.txt").write_text("not an image")
    (flat / "images" / "fake.png").write_text("plain text with an image's name")
    _png(flat / "masks" / "fake_mask.png", _square_mask((20, 24)))
    _png(flat / "images" / "lonely.png", gray)
    _png(flat / "masks" / "orphan_mask.png", _square_mask((20, 24)))

    msd = tmp_path / "msd"
    volume = np.random.default_rng(1).normal(size=(16, 18, 6)).astype(np.float32)
    labels = np.zeros((16, 18, 6), np.uint8)
    labels[3:9, 4:10, 1:4] = 1
    labels[10:13, 4:8, 2] = 2
    names = ["good", "badheader", "nan", "float_label", "shape"]
    _nifti(msd / "imagesTr" / "good.nii.gz", volume)
    _nifti(msd / "labelsTr" / "good.nii.gz", labels)
    (msd / "imagesTr" / "badheader.nii.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 40)
    _nifti(msd / "labelsTr" / "badheader.nii.gz", labels)
    with_nan = volume.copy()
    with_nan[0, 0, 0], with_nan[1, 1, 1] = np.nan, np.inf
    _nifti(msd / "imagesTr" / "nan.nii.gz", with_nan)
    _nifti(msd / "labelsTr" / "nan.nii.gz", labels)
    _nifti(msd / "imagesTr" / "float_label.nii.gz", volume)
    _nifti(msd / "labelsTr" / "float_label.nii.gz", labels.astype(np.float32))
    _nifti(msd / "imagesTr" / "shape.nii.gz", volume)
    _nifti(msd / "labelsTr" / "shape.nii.gz", labels[:, :, :5])
    spec = {
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "a", "2": "b"},
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in names]
        + [{"image": "./imagesTr/missing.nii.gz", "label": "./labelsTr/missing.nii.gz"}],
    }
    (msd / "dataset.json").write_text(json.dumps(spec))
    return tmp_path


def test_broken_files_are_skipped_with_reasons(corpus):
    manifest = build_manifest(corpus, progress=False)
    reasons = {entry["path"]: entry["reason"] for entry in manifest.skipped}
    assert set(reasons) == {
        "flat/images/truncated.png",
        "flat/masks/small_mask.png",
        "flat/masks/empty_mask.png",
        "flat/images/notes.txt",
        "flat/images/fake.png",
        "flat/images/lonely.png",
        "flat/masks/orphan_mask.png",
        "msd/imagesTr/badheader.nii.gz",
        "msd/imagesTr/nan.nii.gz",
        "msd/labelsTr/shape.nii.gz",
        "msd/imagesTr/missing.nii.gz",
    }
    assert "truncated" in reasons["flat/images/truncated.png"]
    assert reasons["flat/masks/small_mask.png"] == "mask shape (10, 24) differs from image shape (20, 24)"
    assert reasons["flat/masks/empty_mask.png"] == "mask has no foreground"
    assert reasons["flat/images/notes.txt"] == "not a supported image file"
    assert reasons["flat/images/fake.png"].startswith("cannot decode image")
    assert reasons["flat/images/lonely.png"] == "no matching mask"
    assert reasons["flat/masks/orphan_mask.png"] == "no matching image"
    assert reasons["msd/imagesTr/badheader.nii.gz"].startswith("cannot read NIfTI")
    assert reasons["msd/imagesTr/nan.nii.gz"] == "2 NaN/Inf values"
    assert reasons["msd/labelsTr/shape.nii.gz"] == "mask shape (5, 16, 18) differs from image shape (6, 16, 18)"
    assert reasons["msd/imagesTr/missing.nii.gz"] == "listed in dataset.json but missing"

    kept = {(r.dataset, r.subject) for r in manifest.rows}
    assert kept == {("flat", "good"), ("msd", "good"), ("msd", "float_label")}
    good = [r for r in manifest.rows if r.subject == "good" and r.dataset == "msd"]
    assert sorted((r.slice, r.label) for r in good) == [(1, 1), (2, 1), (2, 2), (3, 1)]
    floats = [r for r in manifest.rows if r.subject == "float_label"]
    assert [(r.slice, r.label, r.box, r.area) for r in floats] == [(r.slice, r.label, r.box, r.area) for r in good]


def test_cli_lists_skipped_files_and_writes_the_manifest(corpus, tmp_path, capsys):
    out = tmp_path / "out" / "m.jsonl"
    assert run(["data", "index", str(corpus), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "flat/images/truncated.png" in printed and "mask has no foreground" in printed
    assert out.is_file()


def test_nothing_usable_is_bad_input_and_writes_nothing(tmp_path, capsys):
    flat = tmp_path / "flat"
    _png(flat / "images" / "empty.png", np.zeros((8, 8), np.uint8))
    _png(flat / "masks" / "empty_mask.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(BadInput, match="nothing usable"):
        build_manifest(tmp_path, progress=False)
    out = tmp_path / "m.jsonl"
    assert run(["data", "index", str(tmp_path), "--out", str(out), "-q"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "nothing usable" in error
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [flat]


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "index", "/nonexistent/folder", "--out", "x.jsonl"],
        ["data", "index", ".", "--out", "x.jsonl", "--fractions", "0.5,0.5"],
        ["data", "index", ".", "--out", "x.jsonl", "--split", "0.5,0.5"],  # the old spelling of --fractions
        ["data", "index", ".", "--out", "x.jsonl", "--axis", "3"],
        ["data", "index", ".", "--out", "x.jsonl", "--modality", "CT"],
        ["data", "show", "/nonexistent/manifest.jsonl"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(argv) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / "x.jsonl").exists()
