"""Every command that reads a file refuses a broken or hostile one with one line and exit 2 (exit 1 and a
warning where the input is well-formed but the result is empty), never a traceback, never an output.

Hostile bundles (path traversal, links, decompression bombs, re-signed and stripped signatures) are
``tests/bundle``'s corpus (test_verify.py, test_trust.py), held to the same rule
(:func:`tests.refusals.assert_refused`); data folders with broken and mismatched files are ``tests/data``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medkd.cli import run
from medkd.data import build_manifest, save_manifest
from tests.corpus import hostile_files as hostile
from tests.onnx_models import box_filler
from tests.refusals import assert_refused


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus-models")
    return {"box": box_filler(root / "box"), "nothing": box_filler(root / "nothing", weight=0.0)}


# name -> (builder of the input file in a folder, message fragment); each is segmented with --box.
IMAGES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "png-truncated": (lambda d: hostile.truncated_png(d / "scan.png"), "scan.png: cannot decode image"),
    "png-text": (lambda d: hostile.text_as_png(d / "scan.png"), "scan.png: cannot decode image"),
    "png-empty": (lambda d: hostile.empty_png(d / "scan.png"), "scan.png: cannot decode image"),
    "png-bomb": (lambda d: hostile.png_bomb(d / "scan.png"), "decompression bomb"),
    "nifti-truncated": (lambda d: hostile.truncated_nifti(d / "scan.nii.gz"), "scan.nii.gz: cannot read NIfTI"),
    "nifti-garbage": (lambda d: hostile.garbage_nifti(d / "scan.nii.gz"), "scan.nii.gz: cannot read NIfTI"),
    "nifti-nan": (lambda d: hostile.nan_nifti(d / "scan.nii.gz"), "scan.nii.gz: 2 NaN/Inf values"),
    "nifti-bomb": (lambda d: hostile.nifti_bomb(d / "scan.nii"), "declares 4096 x 4096 x 4096 pixels, more than the"),
    "nifti-4d": (lambda d: hostile.four_dimensional_nifti(d / "scan.nii.gz"), "NIfTI has 4 dimensions"),
    "dicom-truncated": (lambda d: hostile.truncated_dicom(d / "scan.dcm"), "scan.dcm: cannot read DICOM"),
    "dicom-no-pixels": (lambda d: hostile.dicom(d / "scan.dcm", pixels=False), "scan.dcm: cannot read DICOM"),
    "dicom-bomb": (lambda d: hostile.dicom(d / "scan.dcm", rows=65535, columns=65535), "declares 1 x 65535 x 65535 pixels, more than the"),
    "missing": (lambda d: d / "absent.png", "absent.png does not exist"),
}


@pytest.mark.parametrize("case", list(IMAGES))
def test_segment_refuses_a_broken_image(case, models, tmp_path, capsys):
    build, message = IMAGES[case]
    image = build(tmp_path)
    out = tmp_path / "out" / "mask.png"
    volume = ["--slice", "2"] if case.startswith("nifti") else []
    code = run(["segment", "--model", str(models["box"]), "--image", str(image), "--box", "4,4,20,20", *volume, "--out", str(out)])
    assert_refused(code, capsys.readouterr().err, [out, out.with_name("mask.overlay.png")], message=message)


def test_a_pickle_in_an_npz_is_refused_and_never_run(models, tmp_path, capsys):
    marker = tmp_path / "ran"
    image = hostile.pickle_npz(tmp_path / "scan.npz", marker)
    out = tmp_path / "mask.png"
    code = run(["segment", "--model", str(models["box"]), "--image", str(image), "--box", "0,0,0,0", "--out", str(out)])
    assert_refused(code, capsys.readouterr().err, [out, marker], message="Object arrays cannot be loaded when allow_pickle=False")


def test_a_checkpoint_with_code_is_refused_and_never_run(tmp_path, capsys):
    marker = tmp_path / "ran"
    checkpoint = hostile.pickle_checkpoint(tmp_path / "evil.pt", marker)
    code = run(["models", "check", "unet", "--checkpoint", str(checkpoint)])
    assert_refused(code, capsys.readouterr().err, [marker], message="evil.pt")


def test_a_graph_that_is_not_onnx_is_refused_by_every_command_that_runs_it(tmp_path, capsys):
    export = box_filler(tmp_path / "export")
    (export / "unet.onnx").write_bytes(b"\x08\x01not a protobuf" * 8)
    image = hostile.png(tmp_path / "scan.png", hostile.gray())
    outputs = [tmp_path / "bench.json", tmp_path / "mask.png"]
    for argv in (
        ["bench", "--model", str(export / "unet.onnx"), "--iters", "1", "--out", str(outputs[0])],
        ["segment", "--model", str(export), "--image", str(image), "--box", "4,4,20,20", "--out", str(outputs[1])],
        ["export", "check", str(export / "unet.onnx")],
    ):
        assert_refused(run(argv), capsys.readouterr().err, outputs, message="unet.onnx is not a readable ONNX file: Error parsing message")


def test_an_empty_result_is_a_warning_and_exit_1(models, tmp_path, capsys):
    image = hostile.png(tmp_path / "scan.png", hostile.gray())
    out = tmp_path / "mask.png"
    code = run(["segment", "--model", str(models["nothing"]), "--image", str(image), "--box", "4,4,20,20", "--out", str(out)])
    captured = capsys.readouterr()
    assert_refused(code, captured.err, [out, tmp_path / "mask.overlay.png"], expected=1, message="the mask is empty; nothing written")
    assert captured.out.startswith("object 1: 0 px")


@pytest.fixture()
def indexed(tmp_path) -> Path:
    """A paired 2D dataset of two images, indexed."""
    for name, seed in (("a", 0), ("b", 1)):
        hostile.png(tmp_path / "data" / "images" / f"{name}.png", hostile.gray(seed=seed))
        mask = np.zeros((48, 64), np.uint8)
        mask[10:30, 12:40] = 255
        hostile.png(tmp_path / "data" / "masks" / f"{name}_mask.png", mask)
    path = tmp_path / "data.jsonl"
    save_manifest(build_manifest(tmp_path / "data", progress=False, fractions=(0.0, 0.0, 1.0)), path)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("mask-resized", "masks/a_mask.png is 24 x 64, the manifest says 48 x 64: it changed since indexing"),
        ("image-truncated", "cannot decode image"),
        ("manifest-garbage", "is not a JSON Lines data manifest"),
    ],
)
def test_eval_refuses_data_that_broke_after_indexing(case, message, indexed, models, tmp_path, capsys):
    data = tmp_path / "data"
    if case == "mask-resized":
        hostile.png(data / "masks" / "a_mask.png", np.zeros((24, 64), np.uint8))
    elif case == "image-truncated":
        hostile.truncated_png(data / "images" / "a.png")
    else:
        indexed.write_text("{not json")
    out = tmp_path / "metrics.json"
    code = run(["eval", "--model", str(models["box"]), "--data", str(indexed), "--out", str(out), "--no-cache"])
    assert_refused(code, capsys.readouterr().err, [out], message=message)
