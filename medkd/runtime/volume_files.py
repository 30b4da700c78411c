"""Volumes in and label volumes out, on the source's grid, for ``medkd segment`` on a whole volume.

A label volume is written as NIfTI on the grid of its source, so that ITK-SNAP and 3D Slicer lay it over
the scan voxel for voxel: for a NIfTI source the same array shape and axis order, affine, qform / sform
and voxel sizes (the header copied, data type and scaling set for labels); for a DICOM series the
(column, row, slice) array and the affine that the series' positions, orientation and pixel spacing
define (LPS turned to RAS, as dcm2niix writes it); for a MedSAM-style NPZ a diagonal affine of its
spacing. DICOM SEG is not written: a correct writer needs highdicom, which medkd does not depend on.
An NPZ source may also be answered with an NPZ (``segs``, ``(D, H, W)``, as the CVPR24 challenge).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medkd.artifacts import atomic_path
from medkd.data.intensity import normalize_intensity
from medkd.data.readers import DEFAULT_AXIS, NIFTI_SUFFIXES, NPZ_SUFFIXES, dicom_series_affine, is_dicom_series, read_image, suffix_of
from medkd.errors import BadInput
from medkd.runtime.mask_files import overlay_path
from medkd.runtime.volume_view import orthogonal_view

if TYPE_CHECKING:
    import nibabel as nib

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".npz")


@dataclass
class SourceVolume:
    """A volume as the model sees it: ``(D, H, W)`` uint8 (eval's intensity normalisation, the volume as a
    whole), its spacing in mm per axis (``None`` when unknown), and where it came from."""

    gray: np.ndarray
    spacing: tuple[float, ...] | None
    path: Path
    axis: int


def load_volume(path: Path, modality: str, axis: int = DEFAULT_AXIS) -> SourceVolume:
    """The volume at ``path`` (NIfTI sliced along array ``axis``, DICOM series, NPZ); ``BadInput`` for a 2D image."""
    try:
        decoded = read_image(path, axis)
    except BadInput as exc:
        raise BadInput(f"{path}: {exc}") from exc
    if not decoded.volume or decoded.array.ndim != 3:
        raise BadInput(f"{path} is a 2D image: --box3d applies to volumes (give --box)")
    return SourceVolume(normalize_intensity(decoded.array, modality), decoded.spacing, path, axis)


def check_volume_path(out: Path, source: Path) -> None:
    """``out`` must be NIfTI (any source) or NPZ (an NPZ source)."""
    suffix = suffix_of(out)
    if suffix not in VOLUME_SUFFIXES or (suffix == ".npz" and suffix_of(source) not in NPZ_SUFFIXES):
        raise BadInput(f"--out for a volume must end in .nii.gz or .nii (or .npz for an NPZ source), not {out.name}")


def _nifti(labels: np.ndarray, source: SourceVolume) -> nib.Nifti1Image:
    """``labels`` as a NIfTI image on ``source``'s grid."""
    import nibabel as nib  # imported on use, as the readers do

    suffix = suffix_of(source.path)
    if suffix in NIFTI_SUFFIXES:
        image = nib.load(str(source.path))
        order = [source.axis] + [a for a in range(3) if a != source.axis]
        data = np.transpose(labels, np.argsort(order))
        header = image.header.copy()
        header.set_data_dtype(labels.dtype)
        header.set_slope_inter(1.0, 0.0)
        header.set_intent("label")
        header["cal_min"], header["cal_max"] = 0, int(labels.max(initial=0))
        return type(image)(data, image.affine, header)
    if is_dicom_series(source.path):
        affine = dicom_series_affine(source.path)
    else:
        spacing = source.spacing or (1.0, 1.0, 1.0)
        affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    image = nib.Nifti1Image(np.transpose(labels, (2, 1, 0)), affine)
    image.header.set_intent("label")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image


def _save_labels(labels: np.ndarray, source: SourceVolume, tmp: Path, suffix: str) -> None:
    if suffix == ".npz":
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, segs=labels, **({"spacing": np.asarray(source.spacing)} if source.spacing else {}))
        return
    import nibabel as nib

    named = Path(str(tmp) + suffix)  # nibabel picks compression by the suffix
    try:
        nib.save(_nifti(labels, source), str(named))
        named.replace(tmp)
    finally:
        named.unlink(missing_ok=True)


def write_volume_outputs(labels: np.ndarray, source: SourceVolume, out: Path, overlay: bool) -> list[Path]:
    """Write ``labels`` (``(D, H, W)``, the source's slices first) to ``out`` on the source's grid and, with
    ``overlay``, its three orthogonal planes to ``NAME.overlay.png``; both appear only once both are
    complete. Returns the paths written."""
    check_volume_path(out, source.path)
    written = [out, *([overlay_path(out)] if overlay else [])]
    with ExitStack() as stack:
        _save_labels(labels, source, stack.enter_context(atomic_path(out)), suffix_of(out))
        if overlay:
            orthogonal_view(source.gray, labels, source.spacing).save(stack.enter_context(atomic_path(written[1])), format="PNG")
    return written
