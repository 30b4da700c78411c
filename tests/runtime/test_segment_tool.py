"""``medkd segment`` as a tool: several boxes per call, a label map and an overlay, a JSON line per
object, and exit 1 with a warning (and nothing written when nothing was found) for empty masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medkd.cli import run
from tests.onnx_models import box_filler

HEIGHT, WIDTH = 96, 128  # the model's input is 64 px: the image is halved


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("image") / "scan.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "box": box_filler(root / "box"),  # the mask is the prompt box
        "nothing": box_filler(root / "nothing", weight=0.0),  # logit -1 everywhere
        "large-only": box_filler(root / "large-only", bias=-1.9),  # a box one model pixel wide vanishes
    }


def _segment(model: Path, image: Path, out: Path, *extra: str) -> list[str]:
    return ["segment", "--model", str(model), "--image", str(image), "--out", str(out), *extra]


def test_several_boxes_give_a_label_map_an_overlay_and_a_json_line_each(models, image, tmp_path, capsys):
    out = tmp_path / "masks" / "objects.png"
    assert run(_segment(models["box"], image, out, "--box", "10,20,49,59", "--box", "70,30,109,69", "--json")) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert captured.err == ""
    labels = np.asarray(Image.open(out))
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1, 2}
    for number, (record, box) in enumerate(zip(records, ([10, 20, 49, 59], [70, 30, 109, 69])), start=1):
        rows, cols = np.nonzero(labels == number)
        assert record["object"] == number and record["prompt"] == {"box": [float(v) for v in box]}
        assert record["area"] == rows.size and record["box"] == [cols.min(), rows.min(), cols.max(), rows.max()]
        assert np.abs(np.subtract(record["box"], box)).max() <= 2  # the box, up to the halving's rounding
        assert record["score_kind"] == "mean_probability" and 0.6 < record["score"] < 1 / (1 + np.exp(-1)) + 1e-6
    overlay = np.asarray(Image.open(out.with_name("objects.overlay.png"))).astype(int)
    gray = (overlay[..., 0] == overlay[..., 1]) & (overlay[..., 1] == overlay[..., 2])
    assert overlay.shape == (HEIGHT, WIDTH, 3) and gray[:, 112:].all() and gray[labels == 0].mean() > 0.95
    assert not gray[labels == 1].any() and not gray[labels == 2].any()  # each object tinted


def test_one_box_keeps_the_binary_png_and_prints_a_line(models, image, tmp_path, capsys):
    out = tmp_path / "one.png"
    assert run(_segment(models["box"], image, out, "--box", "10,20,49,59", "--no-overlay")) == 0
    mask = np.asarray(Image.open(out))
    assert set(np.unique(mask)) == {0, 255} and not out.with_name("one.overlay.png").exists()
    rows, cols = np.nonzero(mask)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"object 1: {rows.size} px, box {cols.min()},{rows.min()},{cols.max()},{rows.max()}, mean probability 0.7")
    assert lines[1] == f"wrote {out}"


def test_an_empty_mask_warns_exits_1_and_writes_nothing(models, image, tmp_path, capsys):
    out = tmp_path / "empty.png"
    assert run(_segment(models["nothing"], image, out, "--box", "10,20,49,59", "--json")) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"object": 1, "area": 0, "box": None, "score": None, "score_kind": "mean_probability", "prompt": {"box": [10.0, 20.0, 49.0, 59.0]}}
    assert captured.err.splitlines() == ['warning: object 1 ({"box": [10.0, 20.0, 49.0, 59.0]}): the mask is empty; nothing written']
    assert list(tmp_path.iterdir()) == []


def test_some_empty_objects_write_the_others_and_exit_1(models, image, tmp_path, capsys):
    out = tmp_path / "some.nii.gz"
    assert run(_segment(models["large-only"], image, out, "--box", "10,10,10,10", "--box", "40,40,90,80")) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ['warning: object 1 ({"box": [10.0, 10.0, 10.0, 10.0]}): the mask is empty']
    import nibabel as nib

    labels = np.asarray(nib.load(str(out)).dataobj)
    assert set(np.unique(labels)) == {0, 2} and (tmp_path / "some.overlay.png").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--box", "1,1,9,9", "--box", "20,20,30,30", "--point", "5,5"], "--point prompts one object: give at most one --box with it"),
        (["--box", "200,10,220,20"], "--box 200,10,220,20 lies outside the 128 x 96 image"),
        (["--box", "1,1,nan,9"], "--box must be x0,y0,x1,y1"),
        (["--box", "1,1,9,9", "--out", "x.overlay.png"], "--out must end in .png, .nii.gz, .nii (and not in .overlay.png)"),
    ],
)
def test_bad_prompts_are_one_line_and_exit_2(models, image, tmp_path, extra, message, capsys):
    argv = ["segment", "--model", str(models["box"]), "--image", str(image), "--out", str(tmp_path / "m.png"), *extra]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err and list(tmp_path.iterdir()) == []
