"""Readers: raster modes, NIfTI axes and spacing, DICOM series order and rescale, MedSAM NPZ."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medkd.data import ReadError, build_manifest, read_image, read_mask


def test_raster_modes(tmp_path):
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").array.shape == (5, 6, 3)
    labels = np.array([[0, 1, 700], [65535, 0, 2]], np.uint16)
    Image.fromarray(labels).save(tmp_path / "instances.png")
    decoded = read_mask(tmp_path / "instances.png")
    assert decoded.array.tolist() == labels.tolist() and not decoded.volume and decoded.spacing is None
    jpeg = np.zeros((16, 16), np.uint8)
    jpeg[4:12, 4:12] = 255
    Image.fromarray(jpeg).save(tmp_path / "mask.jpg", quality=70)
    assert np.array_equal(read_mask(tmp_path / "mask.jpg").array, (jpeg > 127).astype(np.uint8))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "colour.png")
    with pytest.raises(ReadError, match="colour"):
        read_mask(tmp_path / "colour.png")


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_nifti_is_sliced_along_the_chosen_axis_with_its_spacing(tmp_path, axis):
    volume = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(volume, np.diag([0.5, 0.7, 2.0, 1.0])), tmp_path / "v.nii.gz")
    decoded = read_image(tmp_path / "v.nii.gz", axis)
    assert decoded.volume
    assert np.array_equal(decoded.array[1], np.take(volume, 1, axis=axis))
    assert decoded.spacing == tuple(float(s) for s in np.array([0.5, 0.7, 2.0])[[axis] + [a for a in range(3) if a != axis]])


def test_float_label_volume_is_cast_and_fractions_are_refused(tmp_path):
    labels = np.zeros((4, 4, 2), np.float32)
    labels[1, 1, 0] = 2.0
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "l.nii")
    decoded = read_mask(tmp_path / "l.nii")
    assert decoded.array.dtype == np.uint16 and decoded.array[0, 1, 1] == 2
    labels[0, 0, 0] = 0.5
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "bad.nii")
    with pytest.raises(ReadError, match="non-integer"):
        read_mask(tmp_path / "bad.nii")


def _dicom_slice(path, pixels, z, instance, slope=2.0, intercept=-1024.0):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.PixelSpacing = [0.8, 0.6]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, z]
    ds.InstanceNumber = instance
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_series_is_ordered_by_position_and_rescaled(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    z_positions = [7.5, 0.0, 5.0, 2.5]
    for number, z in enumerate(z_positions):
        _dicom_slice(series / f"file{number}.dcm", np.full((3, 4), int(z * 10)), z, instance=10 - number)
    decoded = read_image(series)
    assert decoded.volume and decoded.array.shape == (4, 3, 4)
    assert decoded.array[:, 0, 0].tolist() == [z * 10 * 2.0 - 1024.0 for z in sorted(z_positions)]
    assert decoded.spacing == (2.5, 0.8, 0.6)
    single = read_image(series / "file0.dcm")
    assert not single.volume and single.spacing == (0.8, 0.6)


def test_dicom_series_indexes_with_a_nifti_mask(tmp_path):
    data = tmp_path / "ct-dicom"
    (data / "images" / "case01").mkdir(parents=True)
    for index in range(3):
        _dicom_slice(data / "images" / "case01" / f"{index}.dcm", np.full((8, 8), 1000 + index), 2.0 * index, index)
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[1, 2:5, 3:6] = 1
    (data / "masks").mkdir()
    nib.save(nib.Nifti1Image(labels, np.eye(4)), data / "masks" / "case01.nii.gz")
    manifest = build_manifest(tmp_path, axis=0, progress=False)
    (row,) = manifest.rows
    assert (row.slice, row.label, row.box, row.area, row.spacing) == (1, 1, (3, 2, 5, 4), 9, (0.8, 0.6))
    assert row.modality == "CT" and row.image == "ct-dicom/images/case01"


def test_medsam_npz_2d_and_3d(tmp_path):
    image_2d = np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    gts_2d = np.zeros((10, 12), np.uint8)
    gts_2d[2:4, 3:9] = 1
    np.savez_compressed(tmp_path / "US_case1.npz", imgs=image_2d, gts=gts_2d, spacing=np.array([0.3, 0.3]))
    volume = np.random.default_rng(1).normal(size=(4, 10, 12)).astype(np.float32)
    gts_3d = np.zeros((4, 10, 12), np.uint8)
    gts_3d[2, 5:7, 5:8] = 3
    np.savez_compressed(tmp_path / "US_case2.npz", imgs=volume, gts=gts_3d, spacing=np.array([3.0, 0.5, 0.4]))
    first, second = read_image(tmp_path / "US_case1.npz"), read_mask(tmp_path / "US_case2.npz")
    assert not first.volume and first.array.shape == (10, 12, 3) and first.spacing == (0.3, 0.3)
    assert second.volume and second.spacing == (3.0, 0.5, 0.4)
    manifest = build_manifest(tmp_path, progress=False)
    assert manifest.datasets[tmp_path.name]["layout"] == "npz"
    summary = sorted((r.subject, r.slice, r.label, r.box, r.spacing, r.modality) for r in manifest.rows)
    assert summary == [
        ("US_case1", None, 1, (3, 2, 8, 3), (0.3, 0.3), "US"),
        ("US_case2", 2, 3, (5, 5, 7, 6), (0.5, 0.4), "US"),
    ]
