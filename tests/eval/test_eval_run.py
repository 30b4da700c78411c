"""``medkd eval`` and the evaluation runner with tiny random models on real and synthetic images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from segment_anything import SamPredictor

from medkd.cli import run
from medkd.data import (
    RowLoader,
    build_manifest,
    make_synthetic,
    plan_geometry,
    save_manifest,
)
from medkd.evaluation import evaluate
from medkd.runtime import Prompts, load_segmenter


@pytest.fixture(scope="module")
def synth_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "data"
    make_synthetic(root, images_2d=4, volumes_3d=2)
    path = root.parent / "synth.jsonl"
    save_manifest(build_manifest(root, fractions=(0.0, 0.0, 1.0), progress=False), path)
    return path


def _eval(tmp_path, *argv):
    out = tmp_path / "metrics.json"
    code = run(["eval", *argv, "--out", str(out), "--no-cache"])
    return code, json.loads(out.read_text()) if out.exists() else None


@pytest.mark.data
def test_eval_against_itself_agrees_fully_and_writes_the_report(tiny_sam, ct_manifest, tmp_path, capsys):
    code, report = _eval(tmp_path, "--model", str(tiny_sam), "--data", str(ct_manifest), "--against", str(tiny_sam))
    assert code == 0
    assert report["kind"] == "medkd.eval"
    assert report["config"]["model"]["name"] == "sam-vit-stand-in" and report["config"]["model"]["input_size"] == 256
    assert report["config"]["split"] == "test" and report["config"]["prompt"] == "box"
    objects = report["objects"]
    assert len(objects) == report["summary"]["objects"] == 3
    assert {o["agreement_dsc"] for o in objects} == {1.0} and {o["agreement_iou"] for o in objects} == {1.0}
    assert report["summary"]["by_dataset"]["ct-organs"]["dsc"]["n"] == 3
    assert all(0.0 <= o["dsc"] <= 1.0 and 0.0 <= o["nsd"] <= 1.0 for o in objects)
    printed = capsys.readouterr().out
    assert "dataset: ct-organs" in printed and "agree DSC" in printed


@pytest.mark.data
def test_a_different_teacher_agrees_less(tiny_sam, other_tiny_sam, ct_manifest, tmp_path):
    code, report = _eval(
        tmp_path, "-m", str(tiny_sam), "-d", str(ct_manifest), "--split", "val", "--limit", "4", "--against", str(other_tiny_sam)
    )
    assert code == 0
    assert report["summary"]["overall"]["agreement_dsc"]["mean"] < 1.0


@pytest.mark.parametrize(("prompt", "crop"), [("point", "none"), ("box", "box"), ("point", "box")])
def test_prompt_and_crop_modes_run_on_synthetic_data(tiny_sam, synth_manifest, tmp_path, prompt, crop):
    code, report = _eval(
        tmp_path, "-m", str(tiny_sam), "-d", str(synth_manifest), "--prompt", prompt, "--crop", crop, "--limit", "3"
    )
    assert code == 0
    assert report["summary"]["objects"] == 6
    assert set(report["summary"]["by_dataset"]) == {"synth-2d", "synth-3d"}


def test_unet_takes_boxes_and_refuses_points(tiny_unet, synth_manifest, tmp_path, capsys):
    code, report = _eval(tmp_path, "-m", str(tiny_unet), "-d", str(synth_manifest), "--limit", "2", "--batch-size", "3")
    assert code == 0 and report["config"]["model"]["name"] == "unet"
    code, _ = _eval(tmp_path / "p", "-m", str(tiny_unet), "-d", str(synth_manifest), "--prompt", "point", "--limit", "1")
    assert code == 2 and "box prompts only" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra",
    [["--prompt", "scribble"], ["--crop", "centre"], ["--split", "holdout"], ["--dataset", "nope"], ["--model", "no-such-model"]],
)
def test_bad_eval_input_exits_2_and_writes_nothing(tiny_sam, synth_manifest, tmp_path, capsys, extra):
    argv = ["-m", str(tiny_sam), "-d", str(synth_manifest), *extra]
    code, report = _eval(tmp_path, *argv)
    assert code == 2 and report is None
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.data
def test_masks_match_sam_predictor_on_a_real_image(tiny_sam, ct_manifest):
    from medkd.data import load_manifest

    manifest = load_manifest(ct_manifest)
    row = manifest.rows[0]
    image = RowLoader(manifest).image(row)
    segmenter = load_segmenter(str(tiny_sam), device="cpu")
    predictor = SamPredictor(segmenter.module)
    predictor.set_image(image)
    expected, _, _ = predictor.predict(box=np.array(row.box), multimask_output=False, return_logits=True)
    geometry = plan_geometry(image.shape[:2], segmenter.input_size)
    (logits,) = segmenter(geometry.image_to_model(image)[None], [Prompts(boxes=geometry.boxes_to_model(np.array([row.box])))])
    ours = geometry.mask_to_original(logits).numpy()
    assert ours.shape == expected.shape == (1, row.height, row.width)
    assert np.allclose(ours, expected, atol=1e-4)


def test_batched_evaluation_equals_one_image_at_a_time(tiny_sam, synth_manifest):
    from medkd.data import load_manifest

    manifest = load_manifest(synth_manifest)
    rows = manifest.select(datasets=["synth-2d"])[:8]
    segmenter = load_segmenter(str(tiny_sam), device="cpu")
    loader = RowLoader(manifest)
    batched = evaluate(segmenter, rows, loader, batch_size=4, progress=False)
    single = evaluate(segmenter, rows, loader, batch_size=1, progress=False)
    for a, b in zip(batched.records, single.records):
        assert a["id"] == b["id"] and a["dsc"] == pytest.approx(b["dsc"], abs=1e-6)
