"""Volumes: slice-by-slice propagation, label volumes on the source grid (NIfTI with a non-identity affine,
a DICOM series), the runtime path without torch, and per-volume evaluation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medkd.cli import run
from medkd.runtime.volume import box3d_prompt, key_slice_prompt, mask_box, propagate
from tests.onnx_models import box_threshold

BRIGHT, DARK = 200.0, 10.0


@pytest.fixture(scope="module")
def threshold_model(tmp_path_factory) -> Path:
    """A hand-made export whose mask is the bright voxels (> 127.5 after normalisation) inside the box."""
    return box_threshold(tmp_path_factory.mktemp("threshold") / "export")


def _sphere(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((axis - c) ** 2 for axis, c in zip(grid, centre)) <= radius**2


def test_propagation_starts_mid_box_takes_each_box_from_the_previous_mask_and_stops_at_empty():
    sphere = _sphere((21, 40, 40), (10, 20, 18), 6)
    calls: list[tuple[int, np.ndarray]] = []

    def decode(z, box, ahead):
        calls.append((z, box.copy()))
        x0, y0, x1, y1 = (int(v) for v in box)
        inside = np.zeros(sphere.shape[1:], bool)
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
        return np.where(sphere[z] & inside, 1.0, -1.0)

    steps = []
    prompt = box3d_prompt((2, 2, 0, 37, 37, 20), depth=21)
    reached = propagate(decode, prompt, steps.append)
    assert prompt.start == 10 and calls[0][0] == 10 and np.array_equal(calls[0][1], [2, 2, 37, 37])
    assert sorted(reached) == list(range(4, 17))  # the sphere's slices, all of them
    assert [z for z, _ in calls] == [10, *range(11, 18), *range(9, 2, -1)]  # one empty slice each way, then stop
    for z, box in calls[1:]:
        previous = z - 1 if z > 10 else z + 1
        assert np.array_equal(box, mask_box(sphere[previous]))
    assert sum(steps) == 21
    assert all(np.array_equal(reached[z] > 0, sphere[z]) for z in reached)


def test_prompt_ranges():
    assert box3d_prompt((0, 0, 3, 5, 5, 8), depth=10).start == 5  # the challenge's int((z1 - z0) / 2 + z0)
    assert (box3d_prompt((0, 0, 3, 5, 5, 40), depth=10).last, key_slice_prompt(np.array([0, 0, 4, 4]), 6, 10).first) == (9, 0)
    empty = propagate(lambda z, box, ahead: np.full((4, 4), -1.0), key_slice_prompt(np.array([0, 0, 3, 3]), 2, 5))
    assert empty == {}


def _nifti_scene(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A (48, 40, 9) volume, slices along array axis 2, rotated / flipped, anisotropic; two bright
    blocks (the objects) and a bright speck outside every box."""
    volume = np.full((48, 40, 9), DARK, np.float32)
    volume[6:20, 4:12, 2:7] = BRIGHT  # object 1: rows 6-19, columns 4-11, slices 2-6
    volume[30:44, 20:36, 3:5] = BRIGHT  # object 2
    volume[46, 38, 4] = BRIGHT  # outside both boxes
    affine = np.array([[0.0, -0.7, 0.0, 12.0], [0.0, 0.0, 3.0, -40.0], [-1.1, 0.0, 0.0, 25.0], [0.0, 0.0, 0.0, 1.0]])
    nib.save(nib.Nifti1Image(volume, affine), str(path))
    return volume, affine


def test_nifti_label_volume_overlays_the_source_voxel_for_voxel(threshold_model, tmp_path, capsys):
    source = tmp_path / "scan.nii.gz"
    volume, affine = _nifti_scene(source)
    out = tmp_path / "labels.nii.gz"
    # x: array axis 1 (columns), y: array axis 0 (rows), z: array axis 2 (slices)
    argv = ["segment", "-m", str(threshold_model), "-i", str(source), "--box3d", "2,4,0,14,22,8", "--box3d", "18,28,3,37,45,4", "-o", str(out), "--json"]
    assert run([*argv, "--modality", "MR"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    written = nib.load(str(out))
    labels = np.asarray(written.dataobj)
    assert written.shape == volume.shape and np.allclose(written.affine, affine)
    assert np.allclose(written.header.get_zooms(), (1.1, 0.7, 3.0)) and labels.dtype == np.uint8
    expected = np.zeros(volume.shape, np.uint8)
    expected[6:20, 4:12, 2:7], expected[30:44, 20:36, 3:5] = 1, 2
    assert np.array_equal(labels, expected)
    assert [(r["object"], r["voxels"], r["slices"], r["box3d"]) for r in records] == [(1, 14 * 8 * 5, 5, [4, 6, 2, 11, 19, 6]), (2, 14 * 16 * 2, 2, [20, 30, 3, 35, 43, 4])]
    assert records[0]["volume_ml"] == pytest.approx(14 * 8 * 5 * 1.1 * 0.7 * 3.0 / 1000, abs=1e-4)
    assert (tmp_path / "labels.overlay.png").is_file()


def test_key_slice_box_propagates_through_the_volume(threshold_model, tmp_path):
    source = tmp_path / "scan.nii"
    volume, _ = _nifti_scene(source)
    out = tmp_path / "one.nii.gz"
    assert run(["segment", "-m", str(threshold_model), "-i", str(source), "--slice", "4", "--box", "3,5,12,20", "--propagate", "-o", str(out), "--no-overlay"]) == 0
    assert np.array_equal(np.asarray(nib.load(str(out)).dataobj) == 1, np.pad(np.ones((14, 8, 5), bool), ((6, 28), (4, 28), (2, 2))))


def _dicom_series(directory: Path, volume: np.ndarray, origin, row_cosine, column_cosine, pixel_spacing, step) -> None:
    """``volume`` (slices, rows, columns) as a DICOM series, one file per slice, named out of order."""
    directory.mkdir()
    for index, pixels in enumerate(volume):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = directory / f"{(index * 7) % len(volume):03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.Modality = "MR"
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
        ds.PixelSpacing = list(pixel_spacing)
        ds.ImageOrientationPatient = [*row_cosine, *column_cosine]
        ds.ImagePositionPatient = list(np.asarray(origin) + index * np.asarray(step))
        ds.InstanceNumber = len(volume) - index
        ds.PixelData = pixels.astype(np.uint16).tobytes()
        ds.save_as(str(path), enforce_file_format=True)


def test_dicom_series_gives_a_nifti_on_the_series_grid(threshold_model, tmp_path):
    volume = np.full((6, 40, 32), DARK, np.float32)  # slices, rows, columns
    volume[1:4, 8:30, 5:12] = BRIGHT
    volume[4, 8:12, 5:7] = BRIGHT  # not symmetric across slices
    origin, row_cosine, column_cosine = np.array([-20.0, 15.0, 30.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])  # sagittal
    pixel_spacing, step = (0.9, 0.6), 2.0 * np.cross(row_cosine, column_cosine)  # slices follow the normal, as readers order them
    _dicom_series(tmp_path / "series", volume, origin, row_cosine, column_cosine, pixel_spacing, step)
    out = tmp_path / "labels.nii.gz"
    assert run(["segment", "-m", str(threshold_model), "-i", str(tmp_path / "series"), "--box3d", "2,2,0,20,35,5", "-o", str(out), "--modality", "MR"]) == 0
    written = nib.load(str(out))
    labels = np.asarray(written.dataobj)
    assert written.shape == (32, 40, 6)  # columns, rows, slices
    assert np.array_equal(labels, np.transpose(volume > 100, (2, 1, 0)).astype(np.uint8))
    for column, row, index in ((0, 0, 0), (5, 8, 1), (31, 39, 5)):  # voxel centres where the DICOM headers put them
        lps = origin + index * step + column * pixel_spacing[1] * row_cosine + row * pixel_spacing[0] * column_cosine
        assert np.allclose(written.affine @ [column, row, index, 1], [-lps[0], -lps[1], lps[2], 1])


def test_volume_segmentation_from_an_export_needs_no_torch(threshold_model, tmp_path):
    source = tmp_path / "scan.nii.gz"
    _nifti_scene(source)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from medkd.cli import run\n"
        f"assert run(['segment', '-m', {str(threshold_model)!r}, '-i', {str(source)!r}, '--box3d', '2,4,0,14,22,8', '-o', {str(tmp_path / 'l.nii.gz')!r}]) == 0\n"
        "assert 'torch' not in {name for name, module in sys.modules.items() if module is not None}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
    assert np.asarray(nib.load(str(tmp_path / "l.nii.gz")).dataobj).sum() == 14 * 8 * 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--box3d", "1,2,3,4,5"], "--box3d must be"),
        (["--box3d", "60,2,0,70,5,3"], "lies outside"),
        (["--box", "1,1,5,5", "--propagate"], "a volume takes --box3d"),
        (["--box3d", "1,1,0,5,5,3", "--point", "2,2"], "a volume takes --box3d"),
    ],
)
def test_bad_volume_prompts_exit_2(threshold_model, tmp_path, capsys, argv, message):
    source = tmp_path / "scan.nii.gz"
    _nifti_scene(source)
    assert run(["segment", "-m", str(threshold_model), "-i", str(source), *argv, "-o", str(tmp_path / "l.nii.gz")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "l.nii.gz").exists()


@pytest.fixture
def scene_manifest(tmp_path) -> Path:
    """A one-volume MSD-layout dataset of :func:`_nifti_scene` with its two objects labelled, all in train."""
    from medkd.data import build_manifest, save_manifest

    root = tmp_path / "scans"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    volume, affine = _nifti_scene(root / "imagesTr" / "scan.nii.gz")
    labels = np.zeros(volume.shape, np.uint8)
    labels[6:20, 4:12, 2:7], labels[30:44, 20:36, 3:5] = 1, 2
    nib.save(nib.Nifti1Image(labels, affine), str(root / "labelsTr" / "scan.nii.gz"))
    training = [{"image": "./imagesTr/scan.nii.gz", "label": "./labelsTr/scan.nii.gz"}]
    spec = {"name": "scans", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "one", "2": "two"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(spec))
    manifest = tmp_path / "scans.jsonl"
    save_manifest(build_manifest(root, progress=False, fractions=(1.0, 0.0, 0.0)), manifest)
    return manifest


def test_eval_scores_each_volume_object_in_3d(threshold_model, scene_manifest, tmp_path):
    out = tmp_path / "eval.json"
    assert run(["eval", "-m", str(threshold_model), "-d", str(scene_manifest), "--split", "train", "--out", str(out), "--no-cache"]) == 0
    volumes = json.loads(out.read_text())["volumes"]
    assert [(o["label"], o["box3d"], o["slices"], o["voxels"]) for o in volumes["objects"]] == [(1, [4, 6, 2, 11, 19, 6], 5, 560), (2, [20, 30, 3, 35, 43, 4], 2, 448)]
    assert {(o["dsc"], o["nsd"], o["hd95"]) for o in volumes["objects"]} == {(1.0, 1.0, 0.0)}
    assert volumes["objects"][0]["spacing_mm"] == pytest.approx([3.0, 1.1, 0.7])
    assert volumes["summary"]["overall"]["dsc"]["n"] == 2


def test_report_shows_the_volume_as_three_planes(threshold_model, scene_manifest):
    from medkd.data import load_manifest
    from medkd.report.volume import volume_figures

    figures = volume_figures(load_manifest(scene_manifest), [("threshold", str(threshold_model))], "train")
    pictures = re.findall(r'src="data:image/png;base64,([^"]+)"', figures)
    assert len(pictures) == 2 and pictures[0] == pictures[1]  # the model's planes are the ground truth's, pixel for pixel
    assert "threshold: 3D DSC one 1.000, two 1.000" in figures


def test_medsam_npz_in_npz_out(threshold_model, tmp_path):
    volume = np.full((7, 64, 40), DARK, np.float32)  # D, H, W as the challenge stores imgs; 64 px: the model input, not resized
    volume[2:5, 3:20, 4:9] = BRIGHT
    np.savez(tmp_path / "case.npz", imgs=volume, spacing=np.array([2.5, 0.8, 0.8]))
    out = tmp_path / "segs.npz"
    assert run(["segment", "-m", str(threshold_model), "-i", str(tmp_path / "case.npz"), "--box3d", "1,1,0,15,25,6", "-o", str(out), "--no-overlay"]) == 0
    with np.load(out) as written:
        assert np.array_equal(written["segs"], (volume > 100).astype(np.uint8)) and written["spacing"].tolist() == [2.5, 0.8, 0.8]


def test_slice_encoder_keeps_at_most_capacity_embeddings_and_encodes_an_evicted_slice_again():
    from medkd.data.geometry import plan_geometry
    from medkd.runtime.volume import SliceEncoder

    class Mean:
        def embed(self, inputs: np.ndarray) -> np.ndarray:
            return inputs.reshape(len(inputs), -1).mean(axis=1)

    volume = (np.arange(10)[:, None, None] * 20 + np.zeros((10, 8, 8))).astype(np.uint8)
    geometry = plan_geometry((8, 8), 16)
    encoder = SliceEncoder(Mean(), volume, batch=2, capacity=4)
    first = [float(encoder.embedding(geometry, z, range(z + 1, 10))) for z in range(10)]
    assert encoder.encoded == 10 and len(encoder._embedded) == 4  # two at a time, the oldest let go
    assert first == sorted(first) and len(set(first)) == 10  # each slice its own embedding
    assert float(encoder.embedding(geometry, 9)) == first[9] and encoder.encoded == 10  # kept: not encoded again
    assert float(encoder.embedding(geometry, 0)) == first[0] and encoder.encoded == 11  # evicted: encoded again, same value
