"""A volume and its label volume as three orthogonal planes side by side (PIL only, for the runtime).

The planes cross at the labels' centroid (the volume's centre when there are none): the slice there,
and the two planes through the slice axis, the slice axis upwards. Each plane is drawn at its physical
aspect ratio (from the spacing), its longer side 240 px, with every object tinted in its colour, as the 2D overlay does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from medkd.runtime.mask_files import ALPHA, PALETTE

PLANE_SIZE = 240
CAPTION_HEIGHT = 14
GAP = 6


def centre_of(labels: np.ndarray) -> tuple[int, int, int]:
    """(z, y, x) of the labels' centroid, or of the volume when it has none."""
    voxels = np.nonzero(labels)
    if not voxels[0].size:
        return tuple(int(n) // 2 for n in labels.shape)  # type: ignore[return-value]
    return tuple(int(round(float(np.mean(axis)))) for axis in voxels)  # type: ignore[return-value]


def _tinted(gray: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rgb = np.repeat(gray[..., None].astype(np.float32), 3, axis=-1)
    for number in range(1, int(labels.max(initial=0)) + 1):
        pixels = labels == number
        rgb[pixels] = (1 - ALPHA) * rgb[pixels] + ALPHA * np.float32(PALETTE[(number - 1) % len(PALETTE)])
    return np.rint(rgb).astype(np.uint8)


def _plane(gray: np.ndarray, labels: np.ndarray, pixel_mm: tuple[float, float], caption: str) -> Image.Image:
    """One plane at its physical aspect, its longer side ``PLANE_SIZE`` px, captioned below."""
    height_mm, width_mm = gray.shape[0] * pixel_mm[0], gray.shape[1] * pixel_mm[1]
    scale = PLANE_SIZE / max(height_mm, width_mm)
    size = (max(int(round(width_mm * scale)), 1), max(int(round(height_mm * scale)), 1))
    picture = Image.fromarray(_tinted(gray, labels)).resize(size, Image.NEAREST)
    framed = Image.new("RGB", (size[0], PLANE_SIZE + CAPTION_HEIGHT))
    framed.paste(picture, (0, PLANE_SIZE - size[1]))
    ImageDraw.Draw(framed).text((2, PLANE_SIZE + 1), caption, fill=(255, 255, 255))
    return framed


def orthogonal_view(gray: np.ndarray, labels: np.ndarray, spacing: Sequence[float] | None = None) -> Image.Image:
    """``gray`` (``(D, H, W)`` uint8) with ``labels`` (same shape) as three planes through their centre."""
    dz, dy, dx = (float(s) for s in spacing) if spacing else (1.0, 1.0, 1.0)
    z, y, x = centre_of(labels)
    planes = [
        _plane(gray[z], labels[z], (dy, dx), f"slice z={z}"),
        _plane(gray[::-1, y], labels[::-1, y], (dz, dx), f"y={y}"),
        _plane(gray[::-1, :, x], labels[::-1, :, x], (dz, dy), f"x={x}"),
    ]
    canvas = Image.new("RGB", (sum(p.width for p in planes) + GAP * (len(planes) - 1), planes[0].height))
    left = 0
    for plane in planes:
        canvas.paste(plane, (left, 0))
        left += plane.width + GAP
    return canvas
