"""A corpus of broken and hostile input files, made on the spot (nothing binary is committed).

Each builder writes one file into a folder and returns its path: images that are truncated, not images,
decompression bombs (a header that declares billions of pixels), volumes with NaN, DICOM without pixel
data, and pickles that would run code when unpickled (``os.system`` touching a marker file, which a
test then checks is absent).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image


class RunsCode:
    """An object whose unpickling runs a shell command (what a hostile checkpoint carries)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def gray(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width), dtype=np.uint8)


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def truncated_png(path: Path) -> Path:
    data = png(path, gray()).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def text_as_png(path: Path) -> Path:
    path.write_text("plain text with an image's name")
    return path


def empty_png(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, side: int = 100_000) -> Path:
    """A 100 000 x 100 000 gray PNG header (10 GB of pixels) with one row of data: a few hundred bytes."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(side + 1))) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    return path


def nifti(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


def volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 20, (32, 40, 6)).astype(np.float32)


def truncated_nifti(path: Path) -> Path:
    data = nifti(path, volume()).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def garbage_nifti(path: Path) -> Path:
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 60)
    return path


def nan_nifti(path: Path) -> Path:
    array = volume()
    array[3, 4, 2], array[5, 6, 2] = np.nan, np.inf
    return nifti(path, array)


def nifti_bomb(path: Path) -> Path:
    """A NIfTI header that declares 4096 x 4096 x 4096 voxels, with no data after it."""
    header = nib.Nifti1Header()
    header.set_data_shape((4096, 4096, 4096))
    header.set_data_dtype(np.uint8)
    buffer = io.BytesIO()
    header.write_to(buffer)
    path.write_bytes(buffer.getvalue() + bytes(4))
    return path


def four_dimensional_nifti(path: Path) -> Path:
    return nifti(path, np.zeros((8, 8, 4, 2), np.float32))


def _dicom_dataset(rows: int = 16, columns: int = 16):
    from pydicom.dataset import FileMetaDataset
    from pydicom.dataset import Dataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID, dataset.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
    dataset.Rows, dataset.Columns, dataset.SamplesPerPixel, dataset.PhotometricInterpretation = rows, columns, 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 1
    dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
    dataset.PixelData = np.full((16, 16), 1024, np.int16).tobytes()
    return dataset


def dicom(path: Path, rows: int = 16, columns: int = 16, pixels: bool = True) -> Path:
    dataset = _dicom_dataset(rows, columns)
    if not pixels:
        del dataset.PixelData
    dataset.save_as(str(path), enforce_file_format=True)
    return path


def truncated_dicom(path: Path) -> Path:
    data = dicom(path).read_bytes()
    path.write_bytes(data[: len(data) - 300])
    return path


def pickle_npz(path: Path, marker: Path) -> Path:
    """A MedSAM-style NPZ whose ``imgs`` is an object array: loading it would unpickle ``RunsCode``."""
    np.savez(path, imgs=np.array([RunsCode(marker)], dtype=object))
    return path


def pickle_checkpoint(path: Path, marker: Path) -> Path:
    """A PyTorch checkpoint (zip format) whose pickle runs a shell command when fully unpickled."""
    import torch

    torch.save({"weight": torch.zeros(2), "payload": RunsCode(marker)}, path)
    return path
