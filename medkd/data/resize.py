"""Image and logit resizing in numpy and PIL, with the semantics of the libraries SAM's code uses.

- :func:`longest_side_shape` and :func:`resize_longest`: ``segment_anything``'s ``ResizeLongestSide``
  (``get_preprocess_shape``; ``apply_image`` is PIL's bilinear resize of the uint8 image, which is what
  it calls through torchvision), bit for bit.
- :func:`bilinear`: ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` without
  antialiasing, in float32, bit for bit as PyTorch's generic CPU kernel computes it (positions and
  sums with fused multiply-adds, emulated in float64 and rounded once). PyTorch takes another,
  vectorised kernel for outputs with height + width <= 128, and for 3 channels on one thread: there
  values agree within float32 rounding.
- :func:`centre_indices`: nearest-neighbour sampling at pixel centres (``mode="nearest-exact"``).

Nothing here needs torch: the runtime (``medkd segment``, bundles) runs on numpy, PIL and ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def longest_side_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the longest side resized to ``size``, sides rounded half up."""
    scale = size * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_longest(image: np.ndarray, size: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 with its longest side resized to ``size`` by PIL's bilinear filter."""
    height, width = longest_side_shape(image.shape[0], image.shape[1], size)
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def _linear_weights(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper source index and their weights for each of ``target`` positions."""
    scale = np.float32(source) / np.float32(target)
    centres = np.arange(target, dtype=np.float64) + 0.5
    position = np.maximum((np.float64(scale) * centres - 0.5).astype(np.float32), np.float32(0.0))  # fma(scale, i + 0.5, -0.5)
    lower = np.minimum(position.astype(np.int64), source - 1)
    upper_weight = np.clip(position - lower.astype(np.float32), 0.0, 1.0).astype(np.float32)
    return lower, np.minimum(lower + 1, source - 1), np.float32(1.0) - upper_weight, upper_weight


def _mix(first: np.ndarray, second: np.ndarray, first_weight: np.ndarray, second_weight: np.ndarray) -> np.ndarray:
    """``first * first_weight + second * second_weight`` as fma(first, first_weight, second * second_weight)."""
    return (first.astype(np.float64) * first_weight.astype(np.float64) + (second * second_weight).astype(np.float64)).astype(np.float32)


def bilinear(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(..., h, w)`` float32 resized bilinearly to ``(..., *size)`` (half-pixel centres, edges clamped)."""
    array = np.asarray(array, np.float32)
    rows, cols = array.shape[-2:]
    if (rows, cols) == tuple(size):
        return array.copy()
    top, bottom, top_weight, bottom_weight = _linear_weights(rows, size[0])
    left, right, left_weight, right_weight = _linear_weights(cols, size[1])
    across = _mix(array[..., left], array[..., right], left_weight, right_weight)
    return _mix(across[..., top, :], across[..., bottom, :], top_weight[:, None], bottom_weight[:, None])


def centre_indices(source: int, target: int) -> np.ndarray:
    """Source index sampled by each of ``target`` pixels: the one under its centre (torch's nearest-exact)."""
    return np.minimum(((np.arange(target) + 0.5) * (source / target)).astype(np.int64), source - 1)
