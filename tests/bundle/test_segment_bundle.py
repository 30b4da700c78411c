"""``medkd segment --model NAME.medkd``: the same mask as ``medkd eval`` and ``medkd segment --model`` on the run's export."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from medkd.bundle import load_bundle_segmenter, trust_policy
from medkd.cli import run
from medkd.data import ArrayCache, RowLoader, load_manifest
from medkd.runtime import load_segmenter
from medkd.evaluation.runner import _predict
from tests.bundle.conftest import pack, read_members, replace_member, reseal, rewrite

pytestmark = pytest.mark.data


def _segment(source: list[str], image, box: str, out, *extra: str) -> np.ndarray:
    assert run(["segment", *source, "--image", str(image), "--box", box, "--modality", "CT", "--out", str(out), *extra]) == 0
    return np.asarray(Image.open(out)) > 0


@pytest.mark.parametrize(("run_fixture", "rows", "card_line"), [
    ("sam_run", (3,), "normalization sam, resize longest, input size 64 px, crop box (square window of 2 x the box's longer side, at least 64 px"),
    ("unet_run", (3, 20), "normalization sam, resize longest, input size 256 px, crop box (square window of 2 x the box's longer side, at least 64 px"),
])
def test_bundle_mask_equals_eval_with_the_trained_box_crop(run_fixture, rows, card_line, request, ct_manifest, signing_key, trusted, tmp_path, capsys):
    """The reference recipe's students (tinyvit-256, U-Net) trained with ``crop: box``: ``medkd segment
    --bundle`` runs that crop by itself, matching eval's masks, and the model card names it."""
    run_dir = request.getfixturevalue(run_fixture)
    bundle = pack(run_dir, tmp_path / "model.medkd", "x86-cpu", "--sign", str(signing_key))
    card = {info.name: data for info, data in read_members(bundle)}["MODEL_CARD.md"].decode()
    assert card_line in card and "crop box" in card
    manifest = load_manifest(ct_manifest)
    loader = RowLoader(manifest, ArrayCache(None))
    segmenter = load_segmenter(str(run_dir / "export"), None, "cpu")
    assert segmenter.preprocessing.crop == "box"
    for row in (manifest.rows[i] for i in rows):
        image, box = manifest.resolve(row.image), ",".join(str(v) for v in row.box)
        from_bundle = _segment(["--model", str(bundle), "--trust-store", trusted], image, box, tmp_path / "bundle.png")
        from_export = _segment(["--model", str(run_dir / "export")], image, box, tmp_path / "export.png")
        truths = {row.id: loader.mask(row)}
        evaluated = _predict(segmenter, [[row]], loader, "box", segmenter.preprocessing, truths)[row.id]
        whole_image = _predict(segmenter, [[row]], loader, "box", replace(segmenter.preprocessing, crop="none"), truths)[row.id]
        assert from_bundle.shape == (row.height, row.width) and from_bundle.any()
        assert np.array_equal(from_bundle, from_export) and np.array_equal(from_bundle, evaluated)
        assert not np.array_equal(evaluated, whole_image)  # the crop matters: segment did not run the whole image
        capsys.readouterr()
        overridden = _segment(["--bundle", str(bundle), "--trust-store", trusted], image, box, tmp_path / "none.png", "--crop", "none")
        assert "warning:" in (err := capsys.readouterr().err) and "trained with crop 'box' and is run with crop 'none'" in err
        assert np.array_equal(overridden, whole_image)


def test_points_only_prompts_with_a_box_crop_model_are_bad_input(sam_run, ct_manifest, tmp_path, capsys):
    manifest = load_manifest(ct_manifest)
    image = manifest.resolve(manifest.rows[3].image)
    argv = ["segment", "--model", str(sam_run / "export"), "-i", str(image), "--point", "30,30", "--modality", "CT", "-o", str(tmp_path / "m.png")]
    assert run(argv) == 2
    assert "runs with crop 'box'" in capsys.readouterr().err


def test_the_default_variant_is_onnx_fp32_here_and_a_named_one_is_used(unet_bundle, trusted):
    trust = trust_policy(trusted)
    segmenter = load_bundle_segmenter(unet_bundle, trust)
    assert segmenter.source == f"{unet_bundle}#onnx-fp32" and segmenter.family == "unet" and segmenter.input_size == 256
    assert load_bundle_segmenter(unet_bundle, trust, "onnx-fp32").source.endswith("#onnx-fp32")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--bundle", "{bundle}", "--variant", "tensorrt-fp16"], "the bundle has no variant 'tensorrt-fp16' (it has onnx-fp32)"),
        (["--bundle", "{bundle}", "--model", "x"], "give --model once (--bundle is its old spelling)"),
        (["--model", "x", "--trust-store", "{trusted}"], "--variant, --trust-store and --allow-unsigned apply to a NAME.medkd bundle only"),
    ],
)
def test_bad_bundle_options_are_bad_input(unet_bundle, trusted, ct_manifest, tmp_path, options, message, capsys):
    manifest = load_manifest(ct_manifest)
    image = manifest.resolve(manifest.rows[0].image)
    options = [option.format(bundle=unet_bundle, trusted=trusted) for option in options]
    argv = ["segment", *options, "--trust-store", trusted, "-i", str(image), "--box", "1,1,40,40", "-o", str(tmp_path / "m.png")]
    assert run(argv) == 2
    assert message in capsys.readouterr().err


def test_a_variant_that_is_not_onnx_or_engines_is_never_opened(unet_run, ct_manifest, tmp_path, capsys):
    """An unsigned bundle rewritten consistently so its variant claims to be an AOTInductor package (compiled code)."""
    bundle = pack(unet_run, tmp_path / "plain.medkd")
    inner = "variants/onnx-fp32/manifest.json"

    def claim_aoti(data: bytes) -> bytes:
        artifact = json.loads(data)
        artifact["kind"] = "aoti"
        return json.dumps(artifact).encode()

    forged = rewrite(bundle, tmp_path / "forged.medkd", lambda members: reseal(None)(replace_member(inner, claim_aoti)(members)))
    manifest = load_manifest(ct_manifest)
    argv = ["segment", "--bundle", str(forged), "--allow-unsigned", "-i", str(manifest.resolve(manifest.rows[0].image)), "--box", "1,1,40,40", "-o", str(tmp_path / "m.png")]
    assert run(argv) == 2
    assert "variant onnx-fp32 holds a 'aoti' artifact, not 'export': bundles run only ONNX and TensorRT engines" in capsys.readouterr().err


def test_a_volume_from_the_bundle_equals_the_volume_from_its_export(unet_bundle, unet_run, trusted, shared_data, tmp_path, capsys):
    """The device path: ``medkd segment`` of a hippocampus volume by 3D boxes from a signed bundle writes
    the label volume that the run's export writes, on the source's grid."""
    import nibabel as nib

    source = shared_data / "hippocampus-mri" / "imagesTr" / "hippocampus_006.nii.gz"
    boxes = ["--box3d", "28,5,4,45,28,17", "--box3d", "5,5,9,27,25,28"]
    outputs = []
    for name, model in (("bundle", ["--model", str(unet_bundle), "--trust-store", trusted]), ("export", ["--model", str(unet_run / "export")])):
        out = tmp_path / f"{name}.nii.gz"
        code = run(["segment", *model, "--image", str(source), *boxes, "--modality", "MR", "--out", str(out), "--json", "--no-overlay"])
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        outputs.append((code, records, np.asarray(nib.load(str(out)).dataobj) if out.exists() else None))
    (code, records, labels), (export_code, export_records, export_labels) = outputs
    assert code == export_code == 0 and records == export_records and [r["object"] for r in records] == [1, 2]
    assert labels.shape == nib.load(str(source)).shape and np.array_equal(labels, export_labels)
