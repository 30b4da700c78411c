"""MedSAM intensity normalisation: any image to uint8 0-255, then to three channels.

CT in Hounsfield units is windowed (level 40, width 400, MedSAM's soft-tissue window); CT already
stored as 8-bit (windowed PNG slices) is used as it is. Every other modality is clipped to the
0.5-99.5 percentiles of its foreground (values > 0; the whole image when that is empty) and rescaled
to 0-255. Volumes are normalised as a whole so that their slices share one scale.
"""

from __future__ import annotations

import numpy as np

CT_WINDOW = (40.0, 400.0)
PERCENTILES = (0.5, 99.5)


def _rescale(array: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(array.shape, np.uint8)
    scaled = (np.clip(array.astype(np.float32), low, high) - low) * (255.0 / (high - low))
    return np.rint(scaled).astype(np.uint8)


def normalize_intensity(array: np.ndarray, modality: str, window: tuple[float, float] = CT_WINDOW) -> np.ndarray:
    """Return ``array`` (any shape, gray or RGB) as uint8 0-255 following MedSAM's conventions."""
    if modality == "CT":
        if array.dtype == np.uint8:
            return array
        level, width = window
        return _rescale(array, level - width / 2, level + width / 2)
    foreground = array[array > 0]
    values = foreground if foreground.size else array.ravel()
    low, high = np.percentile(values, PERCENTILES)
    return _rescale(array, float(low), float(high))


def to_rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` uint8 to ``(H, W, 3)`` (gray replicated)."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected a gray or RGB image, got shape {image.shape}")
