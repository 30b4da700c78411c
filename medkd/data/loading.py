"""Load manifest rows as normalised RGB images and object masks, through the preprocessing cache.

A file (2D image or whole volume) is decoded and intensity-normalised once and cached as uint8; its
label map is cached as decoded. The last few files stay in memory, so the slices of one volume and
the objects of one image are cheap to read one after another.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from medkd.data.cache import ArrayCache, file_identity
from medkd.data.intensity import CT_WINDOW, PERCENTILES, normalize_intensity, to_rgb
from medkd.data.manifest import DataManifest, ManifestRow
from medkd.data.readers import DEFAULT_AXIS, ReadError, read_image, read_mask

_MEMORY_FILES = 8


class RowLoader:
    """Images (``(H, W, 3)`` uint8, MedSAM-normalised) and masks (``(H, W)`` bool) of manifest rows."""

    def __init__(self, manifest: DataManifest, cache: ArrayCache | None = None) -> None:
        self.manifest = manifest
        self.cache = cache or ArrayCache(None)
        self._memory: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def _array(self, kind: str, relative: str, axis: int | None, params: dict, compute: Callable[[], np.ndarray]) -> np.ndarray:
        memo = (kind, relative, axis)
        if memo in self._memory:
            self._memory.move_to_end(memo)
            return self._memory[memo]
        key = {"kind": kind, "file": file_identity(self.manifest.resolve(relative)), "axis": axis, **params}
        array = self.cache.get(key, compute)
        self._memory[memo] = array
        if len(self._memory) > _MEMORY_FILES:
            self._memory.popitem(last=False)
        return array

    def normalized(self, row: ManifestRow) -> np.ndarray:
        """The row's whole file normalised to uint8: ``(H, W[, 3])`` or a ``(D, H, W)`` volume."""
        axis = row.axis if row.axis is not None else DEFAULT_AXIS
        path = self.manifest.resolve(row.image)
        params = {"modality": row.modality, "window": CT_WINDOW, "percentiles": PERCENTILES}
        return self._array(
            "image", row.image, row.axis, params, lambda: normalize_intensity(read_image(path, axis).array, row.modality)
        )

    def image(self, row: ManifestRow) -> np.ndarray:
        """The row's 2D image (or slice) as ``(H, W, 3)`` uint8."""
        return to_rgb(self._indexed(row, row.image, self.normalized(row)))

    def label_map(self, row: ManifestRow) -> np.ndarray:
        """The row's 2D label map (or slice of it)."""
        return self._indexed(row, row.mask, self.labels(row))

    def labels(self, row: ManifestRow) -> np.ndarray:
        """The row's whole label file: ``(H, W)``, or ``(D, H, W)`` for a volume."""
        axis = row.axis if row.axis is not None else DEFAULT_AXIS
        path = self.manifest.resolve(row.mask)
        return self._array("mask", row.mask, row.axis, {}, lambda: read_mask(path, axis).array)

    def _indexed(self, row: ManifestRow, relative: str, array: np.ndarray) -> np.ndarray:
        """The row's slice of ``array`` (read from ``relative``), of the size indexing recorded (else ``ReadError``)."""
        if row.slice is not None and not 0 <= row.slice < len(array):
            raise ReadError(f"{self.manifest.resolve(relative)} has {len(array)} slices, no slice {row.slice}: it changed since indexing")
        plane = array if row.slice is None else array[row.slice]
        if plane.shape[:2] != (row.height, row.width):
            raise ReadError(
                f"{self.manifest.resolve(relative)} is {plane.shape[0]} x {plane.shape[1]}, the manifest says {row.height} x {row.width}: "
                "it changed since indexing (index the data again)"
            )
        return plane

    def mask(self, row: ManifestRow) -> np.ndarray:
        """The row's object as a ``(H, W)`` bool mask."""
        return self.label_map(row) == row.label
