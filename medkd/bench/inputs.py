"""Synthetic inputs for timing: seeded images and embeddings, one box prompt per image, feeds for any ONNX.

Latency does not depend on pixel values, but the prompts are real ones: a box (SAM labels 2 and 3)
padded with label -1 points, as medkd's runtimes send them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BOX_LABELS = (2.0, 3.0)
PADDING_LABEL = -1.0
BOX_POINTS = 2
ONNX_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_, "uint8": np.uint8, "int8": np.int8}


def random_array(shape: list[int], seed: int = 0, dtype: Any = np.float32) -> np.ndarray:
    """Standard normal values (zeros for integer and boolean types), seeded."""
    if np.issubdtype(dtype, np.floating):
        return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype)


def box_prompts(prompts: int, size: int, slots: int = BOX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(N, slots, 2)`` coordinates and ``(N, slots)`` labels: the centre half of a ``size`` image as a box, then padding."""
    coords = np.zeros((prompts, slots, 2), np.float32)
    labels = np.full((prompts, slots), PADDING_LABEL, np.float32)
    coords[:, :BOX_POINTS] = [[size * 0.25, size * 0.25], [size * 0.75, size * 0.75]]
    labels[:, :BOX_POINTS] = BOX_LABELS
    return coords, labels


def _dims(shape: list[Any], batch: int, name: str) -> list[int]:
    dims = []
    for axis, dim in enumerate(shape):
        if isinstance(dim, int) and dim > 0:
            dims.append(dim)
        elif axis == 0:
            dims.append(batch)
        elif name in ("point_coords", "point_labels"):
            dims.append(BOX_POINTS)
        else:
            dims.append(1)
    return dims


def onnx_feeds(specs: list[dict[str, Any]], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for a graph from its input specs (``medkd.runtime.layout.tensor_specs``): batch on the first
    dynamic axis, SAM's decoder inputs filled with a box prompt on the embedding's model size."""
    shapes = {spec["name"]: _dims(spec["shape"], batch, spec["name"]) for spec in specs}
    grid = shapes["image_embeddings"][-1] if "image_embeddings" in shapes else None
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name, shape = spec["name"], shapes[spec["name"]]
        dtype = ONNX_DTYPES.get(spec["dtype"], np.float32)
        if name in ("point_coords", "point_labels") and grid is not None:
            coords, labels = box_prompts(shape[0], 16 * grid, shape[1])
            feeds[name] = (coords if name == "point_coords" else labels).astype(dtype)
        elif name == "orig_im_size" and grid is not None:
            feeds[name] = np.full(shape, 4 * grid, dtype)  # low-resolution masks, as medkd's ONNX runtime asks
        elif name in ("mask_input", "has_mask_input"):
            feeds[name] = np.zeros(shape, dtype)
        else:
            feeds[name] = random_array(shape, seed, dtype)
    return feeds
