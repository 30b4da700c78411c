"""Decode medical images and masks into numpy arrays with their pixel spacing.

Every reader returns a :class:`Decoded`: 2D images as ``(H, W)`` or ``(H, W, 3)``, volumes as
``(D, H, W)`` with the slice axis first, and the spacing in mm per array axis (``None`` when the file
does not say). Failures raise :class:`ReadError` with a one-line reason.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from medkd.errors import BadInput

if TYPE_CHECKING:
    import nibabel as nib
    import pydicom

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
NPZ_SUFFIXES = (".npz",)
LOSSY_SUFFIXES = (".jpg", ".jpeg")
DEFAULT_AXIS = 2
# The most pixels (voxels) an image may hold: 2**31, 4x a 1024 x 1024 x 512 volume of 4-byte values. A
# file declaring more (a decompression bomb, or a broken header) is refused before its data is read.
MAX_PIXELS = 1 << 31


class ReadError(BadInput):
    """A file that cannot be used: undecodable, inconsistent or of an unsupported kind."""


@dataclass
class Decoded:
    """A decoded image or mask: ``array`` plus spacing (mm per array axis) and whether it is a volume."""

    array: np.ndarray
    spacing: tuple[float, ...] | None
    volume: bool


def suffix_of(path: str | os.PathLike) -> str:
    """Lower-case suffix, with ``.nii.gz`` kept whole."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def stem_of(path: str | os.PathLike) -> str:
    """File name without its (possibly double) suffix."""
    name = Path(path).name
    suffix = suffix_of(path)
    return name[: len(name) - len(suffix)] if suffix else name


def is_dicom_series(path: str | os.PathLike) -> bool:
    """A directory whose files include DICOM files (by suffix)."""
    path = Path(path)
    return path.is_dir() and any(suffix_of(child) in DICOM_SUFFIXES for child in path.iterdir())


def is_readable_kind(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a kind some reader handles (by suffix, or a DICOM series directory)."""
    return suffix_of(path) in RASTER_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES + NPZ_SUFFIXES or is_dicom_series(path)


def check_pixels(shape: tuple[int, ...], what: str) -> None:
    """Refuse a declared shape of more than :data:`MAX_PIXELS` pixels, or with a side of 0."""
    count = int(np.prod(shape, dtype=np.float64))
    if count > MAX_PIXELS or 0 in shape:
        raise ReadError(f"{what} declares {' x '.join(map(str, shape))} pixels" + (f", more than the {MAX_PIXELS} medkd reads" if count > MAX_PIXELS else ""))


def read_raster(path: str | os.PathLike) -> Decoded:
    """PNG / JPEG / BMP / TIFF: gray or 16-bit as ``(H, W)``, colour as ``(H, W, 3)``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image_file = Image.open(path)
        with image_file as image:
            image.load()
            if image.mode in ("RGBA", "LA", "P", "CMYK", "YCbCr", "1"):
                image = image.convert("RGB" if image.mode not in ("LA", "1") else "L")
            array = np.asarray(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ReadError(f"cannot decode image: {exc}") from exc
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return Decoded(array, None, volume=False)


def _zooms(image: nib.spatialimages.SpatialImage) -> tuple[float, ...]:
    """The voxel sizes of a NIfTI header, each the shortest decimal of its float32."""
    return tuple(float(str(np.float32(z))) for z in image.header.get_zooms())


def _slice_first(axis: int) -> list[int]:
    if not 0 <= axis < 3:
        raise BadInput(f"slice axis must be 0, 1 or 2, not {axis}")
    return [axis] + [a for a in range(3) if a != axis]


def volume_spacing(path: str | os.PathLike, axis: int = DEFAULT_AXIS) -> tuple[float, ...] | None:
    """The spacing (mm per axis, slice axis first) of the volume :func:`read_image` decodes from ``path``;
    a NIfTI file's from its header alone."""
    if suffix_of(path) not in NIFTI_SUFFIXES:
        return read_image(path, axis).spacing
    import nibabel as nib

    try:
        zooms = _zooms(nib.load(str(path)))
    except Exception as exc:  # nibabel raises many types for broken headers
        raise ReadError(f"cannot read NIfTI: {exc}") from exc
    return tuple(zooms[a] for a in _slice_first(axis)) if len(zooms) >= 3 else None


def read_nifti(path: str | os.PathLike, axis: int = DEFAULT_AXIS) -> Decoded:
    """NIfTI: 2D as ``(H, W)``; 3D moved so that array axis ``axis`` becomes the slice axis (first)."""
    import nibabel as nib  # imported here, as pydicom below: each costs a tenth of a second at start-up

    try:
        image = nib.load(str(path))
        check_pixels(tuple(int(n) for n in image.header.get_data_shape()), "the NIfTI header")
        array = np.asanyarray(image.dataobj)
        zooms = _zooms(image)
    except ReadError:
        raise
    except Exception as exc:  # nibabel raises many types for broken headers and truncated data
        raise ReadError(f"cannot read NIfTI: {exc}") from exc
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        return Decoded(array, zooms[:2], volume=False)
    if array.ndim != 3:
        raise ReadError(f"NIfTI has {array.ndim} dimensions; expected 2 or 3")
    order = _slice_first(axis)
    return Decoded(np.transpose(array, order), tuple(zooms[a] for a in order), volume=True)


def _dicom_pixels(dataset: pydicom.Dataset) -> np.ndarray:
    check_pixels((int(getattr(dataset, "NumberOfFrames", 1) or 1), int(dataset.Rows), int(dataset.Columns)), "the DICOM header")
    pixels = dataset.pixel_array.astype(np.float32)
    slope = float(getattr(dataset, "RescaleSlope", 1.0))
    intercept = float(getattr(dataset, "RescaleIntercept", 0.0))
    return pixels * slope + intercept


def _slice_position(dataset: pydicom.Dataset) -> float:
    """Position along the slice normal (from orientation and position), else the instance number."""
    if "ImagePositionPatient" in dataset and "ImageOrientationPatient" in dataset:
        orientation = np.asarray(dataset.ImageOrientationPatient, dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        return float(np.dot(normal, np.asarray(dataset.ImagePositionPatient, dtype=float)))
    return float(getattr(dataset, "InstanceNumber", 0))


def _dicom_files(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    return sorted(p for p in path.iterdir() if suffix_of(p) in DICOM_SUFFIXES) if path.is_dir() else [path]


def dicom_series_affine(path: str | os.PathLike) -> np.ndarray:
    """The NIfTI (RAS) affine of a DICOM series read by :func:`read_dicom`, for a NIfTI array indexed
    (column, row, slice): from the first slice's position, the orientation, the pixel spacing and the
    step between the first and last slice positions (DICOM's LPS axes turned to RAS)."""
    import pydicom

    try:
        headers = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in _dicom_files(path)]
    except Exception as exc:  # pydicom raises many types for broken files
        raise ReadError(f"cannot read DICOM: {exc}") from exc
    needed = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
    if any(name not in header for header in headers for name in needed):
        raise ReadError(f"the DICOM series lacks {' / '.join(needed)} on some slice: its grid in space is unknown")
    headers.sort(key=_slice_position)
    orientation = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(s) for s in headers[0].PixelSpacing)
    first = np.asarray(headers[0].ImagePositionPatient, dtype=float)
    if len(headers) > 1:
        step = (np.asarray(headers[-1].ImagePositionPatient, dtype=float) - first) / (len(headers) - 1)
    else:
        step = np.cross(orientation[:3], orientation[3:]) * float(getattr(headers[0], "SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = orientation[:3] * column_spacing  # along a row: the column index grows
    lps[:3, 1] = orientation[3:] * row_spacing  # down a column: the row index grows
    lps[:3, 2] = step
    lps[:3, 3] = first
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def read_dicom(path: str | os.PathLike) -> Decoded:
    """A DICOM file (2D) or series directory (3D, slices ordered by position), rescaled to real units."""
    import pydicom

    try:
        datasets = [pydicom.dcmread(str(f)) for f in _dicom_files(path)]
        datasets.sort(key=_slice_position)
        slices = [_dicom_pixels(d) for d in datasets]
    except ReadError:
        raise
    except Exception as exc:  # pydicom raises many types for broken files
        raise ReadError(f"cannot read DICOM: {exc}") from exc
    first = datasets[0]
    row_col = tuple(float(s) for s in getattr(first, "PixelSpacing", ())) or None
    if len(slices) == 1:
        return Decoded(slices[0], row_col, volume=False)
    if len({s.shape for s in slices}) != 1:
        raise ReadError("DICOM series mixes slice sizes")
    positions = [_slice_position(d) for d in datasets]
    gaps = np.diff(positions)
    thickness = float(np.median(np.abs(gaps))) if len(gaps) else float(getattr(first, "SliceThickness", 1.0))
    spacing = (thickness, *row_col) if row_col else None
    return Decoded(np.stack(slices), spacing, volume=True)


def read_npz(path: str | os.PathLike, key: str) -> Decoded:
    """MedSAM-style NPZ: ``imgs`` (``(H, W[, 3])`` or ``(D, H, W)``), ``gts`` alike, ``spacing`` per axis."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz:
                raise ReadError(f"NPZ lacks '{key}' (has {', '.join(npz.files)})")
            array = npz[key]
            spacing = tuple(float(s) for s in npz["spacing"]) if "spacing" in npz else None
    except ReadError:
        raise
    except Exception as exc:  # zipfile / numpy errors on truncated archives
        raise ReadError(f"cannot read NPZ: {exc}") from exc
    volume = array.ndim == 3 and (key == "gts" or array.shape[-1] != 3)
    if spacing is not None and not volume:
        spacing = spacing[-2:]
    return Decoded(array, spacing, volume)


def read_image(path: str | os.PathLike, axis: int = DEFAULT_AXIS) -> Decoded:
    """Decode any supported image; NIfTI volumes are sliced along array axis ``axis``."""
    suffix = suffix_of(path)
    if suffix in RASTER_SUFFIXES:
        decoded = read_raster(path)
    elif suffix in NIFTI_SUFFIXES:
        decoded = read_nifti(path, axis)
    elif suffix in DICOM_SUFFIXES or is_dicom_series(path):
        decoded = read_dicom(path)
    elif suffix in NPZ_SUFFIXES:
        decoded = read_npz(path, "imgs")
    else:
        raise ReadError(f"not a supported image file ({suffix or 'no suffix'})")
    if decoded.array.dtype.kind not in "uif" and decoded.array.dtype != np.bool_:
        raise ReadError(f"unsupported pixel type {decoded.array.dtype}")
    if decoded.array.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(decoded.array)))
        if bad:
            raise ReadError(f"{bad} NaN/Inf values")
    return decoded


def read_mask(path: str | os.PathLike, axis: int = DEFAULT_AXIS) -> Decoded:
    """Decode a mask as integer labels (binary, multi-label or instance ids); float labels are cast."""
    suffix = suffix_of(path)
    decoded = read_npz(path, "gts") if suffix in NPZ_SUFFIXES else read_image(path, axis)
    array = decoded.array
    if array.ndim == 3 and not decoded.volume:
        raise ReadError("mask has colour channels; expected one label per pixel")
    if suffix in LOSSY_SUFFIXES:
        array = (array > 127).astype(np.uint8)
    elif array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ReadError("mask has non-integer values")
        array = array.astype(np.int32 if array.max(initial=0) > 65535 else np.uint16)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.min(initial=0) < 0:
        raise ReadError("mask has negative labels")
    return Decoded(array, decoded.spacing, decoded.volume)
