"""``medkd segment`` against eval's masks: a PNG image, a NIfTI slice; bad input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medkd.cli import run
from medkd.data import ArrayCache, RowLoader, load_manifest
from medkd.runtime import load_segmenter
from medkd.evaluation.runner import _predict

pytestmark = pytest.mark.data


def _eval_mask(model, manifest, row):
    loader = RowLoader(manifest, ArrayCache(None))
    segmenter = load_segmenter(str(model), None, "cpu")
    return _predict(segmenter, [[row]], loader, "box", segmenter.preprocessing, {row.id: loader.mask(row)})[row.id]


def _box(row):
    return ",".join(str(v) for v in row.box)


@pytest.mark.parametrize("source", ["tiny_sam", "sam_export"])
def test_png_mask_equals_eval_mask(source, request, ct_manifest, tmp_path):
    model = request.getfixturevalue(source)
    manifest = load_manifest(ct_manifest)
    row = manifest.rows[3]
    out = tmp_path / "mask.png"
    argv = ["segment", "--model", str(model), "--image", str(manifest.resolve(row.image)), "--box", _box(row), "--modality", "CT", "--out", str(out)]
    assert run(argv) == 0
    written = np.asarray(Image.open(out))
    assert written.dtype == np.uint8 and set(np.unique(written)) <= {0, 255}
    assert np.array_equal(written > 0, _eval_mask(model, manifest, row))


def test_nifti_slice_mask_equals_eval_mask_and_keeps_the_affine(sam_export, hippocampus_manifest, tmp_path):
    manifest = load_manifest(hippocampus_manifest)
    row = next(r for r in manifest.rows if r.slice is not None and r.area > 20)
    source = manifest.resolve(row.image)
    out = tmp_path / "mask.nii.gz"
    argv = ["segment", "-m", str(sam_export), "-i", str(source), "--slice", str(row.slice), "--box", _box(row), "--modality", "MR", "-o", str(out)]
    assert run(argv) == 0
    written = nib.load(str(out))
    expected = _eval_mask(sam_export, manifest, row)
    assert written.shape[2] == 1 and np.array_equal(np.asarray(written.dataobj)[:, :, 0] > 0, expected)
    affine = nib.load(str(source)).affine
    assert np.allclose(written.affine[:3, :3], affine[:3, :3])
    assert np.allclose(written.affine[:3, 3], affine[:3, 3] + affine[:3, 2] * row.slice)


def test_points_only_prompt_runs(sam_export, ct_manifest, tmp_path):
    manifest = load_manifest(ct_manifest)
    row = manifest.rows[0]
    x = (row.box[0] + row.box[2]) // 2
    y = (row.box[1] + row.box[3]) // 2
    out = tmp_path / "p.png"
    assert run(["segment", "-m", str(sam_export), "-i", str(manifest.resolve(row.image)), "--point", f"{x},{y}", "--point", f"{x + 3},{y},0", "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == Image.open(manifest.resolve(row.image)).size[::-1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--box", "1,2,3"], "--box must be"),
        (["--point", "a,b"], "--point must be"),
        ([], "give a --box"),
        (["--box", "0,0,5,5", "--slice", "2"], "--slice does not apply"),
    ],
)
def test_bad_prompts_are_bad_input(sam_export, ct_manifest, tmp_path, extra, message, capsys):
    manifest = load_manifest(ct_manifest)
    image = manifest.resolve(manifest.rows[0].image)
    assert run(["segment", "-m", str(sam_export), "-i", str(image), "-o", str(tmp_path / "m.png"), *extra]) == 2
    assert message in capsys.readouterr().err
