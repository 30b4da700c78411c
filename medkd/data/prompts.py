"""Prompts from ground truth: boxes (with MedSAM's training jitter) and positive / negative points.

Boxes are x0, y0, x1, y1 with inclusive ends; points are x, y; point labels 1 (object) / 0 (background),
as ``SamPredictor`` takes them.
"""

from __future__ import annotations

import numpy as np

MEDSAM_JITTER_AT_1024 = 20


def box_from_mask(mask: np.ndarray) -> np.ndarray:
    """Tight inclusive box of a non-empty 2D mask."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float64)


def jitter_for(input_size: int) -> int:
    """MedSAM's 20 px jitter at 1024 px, scaled to ``input_size`` (5 px at 256, as LiteMedSAM)."""
    return max(1, round(MEDSAM_JITTER_AT_1024 * input_size / 1024))


def jitter_box(box: np.ndarray, max_shift: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Move each side outwards by 0..``max_shift`` px (MedSAM), clipped to an image of ``size`` (H, W)."""
    height, width = size
    shift = rng.integers(0, max_shift + 1, size=4)
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    return np.array(
        [max(0.0, x0 - shift[0]), max(0.0, y0 - shift[1]), min(width - 1.0, x1 + shift[2]), min(height - 1.0, y1 + shift[3])]
    )


def box_mask(box: np.ndarray, size: int) -> np.ndarray:
    """A ``(size, size)`` float32 channel that is 1 inside an inclusive model-space box (U-Net prompt input)."""
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    xs, ys = np.arange(size), np.arange(size)
    inside_x = (xs >= np.floor(x0)) & (xs <= np.ceil(x1))
    inside_y = (ys >= np.floor(y0)) & (ys <= np.ceil(y1))
    return (inside_y[:, None] & inside_x[None, :]).astype(np.float32)


def centre_point(mask: np.ndarray) -> np.ndarray:
    """The object pixel farthest from the background (always inside, even for rings), as ``(1, 2)`` x, y."""
    from scipy import ndimage  # training and evaluation only: the runtime has no scipy

    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return np.array([[col, row]], dtype=np.float64)


def sample_points(
    mask: np.ndarray,
    positives: int,
    negatives: int,
    rng: np.random.Generator,
    box: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random object and background pixels: coords ``(positives + negatives, 2)``, labels ``(N,)``.

    Background points come from inside ``box`` when it has background, else from anywhere; when
    there is no pixel of a kind, its points are padding (label -1, which SAM ignores), so the count
    is always the same.
    """
    background = ~mask
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        window = np.zeros_like(mask)
        window[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
        if (background & window).any():
            background &= window
    coords = np.zeros((positives + negatives, 2))
    labels = np.full(positives + negatives, -1, dtype=np.int64)
    start = 0
    for pixels, count, label in ((mask, positives, 1), (background, negatives, 0)):
        rows, cols = np.nonzero(pixels)
        if count and rows.size:
            chosen = rng.choice(rows.size, size=count, replace=rows.size < count)
            coords[start : start + count] = np.stack([cols[chosen], rows[chosen]], axis=1)
            labels[start : start + count] = label
        start += count
    return coords, labels
