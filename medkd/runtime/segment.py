"""``medkd segment``: one image (or NIfTI slice), box / point prompts, one mask file.

The image goes through exactly ``medkd eval``'s steps: MedSAM intensity normalisation (by modality),
three channels, the model's own preprocessing (its crop window around the box for a model trained
with ``crop: box``, resize, normalise, pad), prompts mapped to model pixels, the segmenter, and logits
mapped back to original pixels and thresholded at 0. Masks are
written as PNG (0 / 255) or NIfTI (``.nii.gz``; for a NIfTI slice the source affine, one slice thick).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from medkd.artifacts import atomic_path
from medkd.data.intensity import normalize_intensity, to_rgb
from medkd.data.readers import DEFAULT_AXIS, read_image, suffix_of
from medkd.errors import BadInput
from medkd.runtime.prompts import Prompts

MASK_SUFFIXES = (".png", ".nii.gz", ".nii")


def load_slice(path: Path, modality: str, slice_index: int | None, axis: int = DEFAULT_AXIS) -> np.ndarray:
    """``(H, W, 3)`` uint8 image as ``RowLoader.image`` gives it (a whole volume normalised, then sliced)."""
    decoded = read_image(path, axis)
    normalized = normalize_intensity(decoded.array, modality)
    if decoded.volume:
        if slice_index is None:
            raise BadInput(f"{path} is a volume of {len(normalized)} slices: pass --slice")
        if not 0 <= slice_index < len(normalized):
            raise BadInput(f"--slice {slice_index} is outside 0-{len(normalized) - 1}")
        return to_rgb(normalized[slice_index])
    if slice_index is not None:
        raise BadInput(f"{path} is a 2D image: --slice does not apply")
    return to_rgb(normalized)


def segment_image(
    segmenter, rgb: np.ndarray, box: np.ndarray | None, points: np.ndarray | None, labels: np.ndarray | None, crop: str | None = None
) -> np.ndarray:
    """Binary ``(H, W)`` mask for one object of ``rgb`` (eval's pre- and post-processing with the
    segmenter's preprocessing; ``crop`` overrides its trained crop, with a warning when different)."""
    if box is None and points is None:
        raise BadInput("give a --box or at least one --point")
    preprocessing = segmenter.preprocessing.with_crop(crop, source=segmenter.source)
    if preprocessing.crop == "box" and box is None:
        raise BadInput(f"{segmenter.source} runs with crop 'box' (the window around the object's box): give a --box, or --crop none")
    geometry = preprocessing.plan(rgb.shape[:2], box)
    prompts = Prompts(
        boxes=None if box is None else geometry.boxes_to_model(box[None]),
        point_coords=None if points is None else geometry.points_to_model(points)[None],
        point_labels=None if labels is None else labels[None],
    )
    logits = segmenter(geometry.image_to_model(rgb)[None], [prompts])[0]
    return (geometry.mask_to_original(logits[0].float().cpu()) > 0).numpy()


def write_mask(mask: np.ndarray, out: Path, source: Path, slice_index: int | None, axis: int = DEFAULT_AXIS) -> None:
    """PNG (0 / 255) or NIfTI; a NIfTI slice keeps the source's affine, shifted to the slice."""
    suffix = suffix_of(out)
    with atomic_path(out) as tmp:
        if suffix == ".png":
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
        elif suffix in (".nii.gz", ".nii"):
            affine = np.eye(4)
            if suffix_of(source) in (".nii.gz", ".nii"):
                image = nib.load(str(source))
                affine = image.affine.copy()
                if slice_index is not None:
                    affine[:3, 3] += affine[:3, axis] * slice_index
            data = np.expand_dims(mask.astype(np.uint8), axis) if slice_index is not None else mask.astype(np.uint8)
            nib.save(nib.Nifti1Image(data, affine), str(tmp) + suffix)
            Path(str(tmp) + suffix).replace(tmp)
        else:
            raise BadInput(f"--out must end in {', '.join(MASK_SUFFIXES)}, not {out.name}")


def parse_box(text: str) -> np.ndarray:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or values[0] > values[2] or values[1] > values[3]:
        raise BadInput(f"--box must be x0,y0,x1,y1 with x0 <= x1 and y0 <= y1, not '{text}'")
    return np.array(values)


def parse_points(texts: list[str]) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    if not texts:
        return None, None
    points, labels = [], []
    for text in texts:
        parts = text.split(",")
        try:
            x, y, label = float(parts[0]), float(parts[1]), int(parts[2]) if len(parts) == 3 else 1
        except (ValueError, IndexError):
            raise BadInput(f"--point must be x,y[,label] with label 1 (object) or 0 (background), not '{text}'") from None
        if len(parts) > 3 or label not in (0, 1):
            raise BadInput(f"--point must be x,y[,label] with label 1 (object) or 0 (background), not '{text}'")
        points.append((x, y))
        labels.append(label)
    return np.array(points), np.array(labels, np.int64)
