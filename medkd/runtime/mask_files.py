"""What ``medkd segment`` writes: the mask file and an overlay PNG beside it, both or neither.

The mask is PNG or NIfTI (``.nii.gz``; for a NIfTI slice the source affine, one slice thick). One
object: 0 / 255 in a PNG, 0 / 1 in NIfTI. Several: a label map, each object's number (1..N, in prompt
order) where it wins (:func:`medkd.runtime.segment.label_map`). The overlay (``NAME.overlay.png``) is the
image as the model saw it, each object tinted in its own colour with its prompt box and number.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from medkd.artifacts import atomic_path
from medkd.data.readers import DEFAULT_AXIS, NIFTI_SUFFIXES, suffix_of
from medkd.errors import BadInput
from medkd.runtime.segment import SegmentedObject, label_map

MASK_SUFFIXES = (".png", ".nii.gz", ".nii")
OVERLAY_SUFFIX = ".overlay.png"
# Colour-blind-safe qualitative colours (Okabe-Ito), repeated past eight objects.
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167), (255, 255, 255))
ALPHA = 0.45


def overlay_path(out: Path) -> Path:
    """``mask.png`` -> ``mask.overlay.png``; ``mask.nii.gz`` -> ``mask.overlay.png``."""
    return out.with_name(out.name[: len(out.name) - len(suffix_of(out))] + OVERLAY_SUFFIX)


def check_mask_path(out: Path) -> None:
    if not out.name.lower().endswith(MASK_SUFFIXES) or out.name.lower().endswith(OVERLAY_SUFFIX):
        raise BadInput(f"--out must end in {', '.join(MASK_SUFFIXES)} (and not in {OVERLAY_SUFFIX}), not {out.name}")


def render_overlay(rgb: np.ndarray, objects: list[SegmentedObject], labels: np.ndarray) -> Image.Image:
    """``rgb`` with each object's pixels of the label map ``labels`` tinted, its prompt box outlined and
    its number written."""
    tinted = rgb.astype(np.float32)
    for number in range(len(objects)):
        pixels = labels == number + 1
        tinted[pixels] = (1 - ALPHA) * tinted[pixels] + ALPHA * np.float32(PALETTE[number % len(PALETTE)])
    image = Image.fromarray(np.rint(tinted).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for number, obj in enumerate(objects):
        colour = PALETTE[number % len(PALETTE)]
        box = obj.prompt.get("box")
        if box is not None:
            draw.rectangle([round(v) for v in box], outline=colour)
            draw.text((round(box[0]) + 2, round(box[1]) + 1), str(number + 1), fill=colour)
        for x, y in obj.prompt.get("points", []):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], outline=colour)
    return image


def _write_mask(labels: np.ndarray, single: bool, tmp: Path, out: Path, source: Path, slice_index: int | None, axis: int) -> None:
    suffix = suffix_of(out)
    if suffix == ".png":
        Image.fromarray(labels * np.uint8(255) if single else labels).save(tmp, format="PNG")
        return
    import nibabel as nib

    affine = np.eye(4)
    if suffix_of(source) in NIFTI_SUFFIXES:
        affine = nib.load(str(source)).affine.copy()
        if slice_index is not None:
            affine[:3, 3] += affine[:3, axis] * slice_index
    data = np.expand_dims(labels, axis) if slice_index is not None else labels
    nib.save(nib.Nifti1Image(data, affine), str(tmp) + suffix)
    Path(str(tmp) + suffix).replace(tmp)


def write_outputs(
    objects: list[SegmentedObject], rgb: np.ndarray, out: Path, source: Path, slice_index: int | None, overlay: bool, axis: int = DEFAULT_AXIS
) -> list[Path]:
    """Write the mask to ``out`` and, with ``overlay``, the overlay beside it; both appear only once
    both are complete. Returns the paths written."""
    check_mask_path(out)
    written = [out, *([overlay_path(out)] if overlay else [])]
    labels = label_map(objects)
    with ExitStack() as stack:
        mask_tmp = stack.enter_context(atomic_path(out))
        _write_mask(labels, len(objects) == 1, mask_tmp, out, source, slice_index, axis)
        if overlay:
            render_overlay(rgb, objects, labels).save(stack.enter_context(atomic_path(written[1])), format="PNG")
    return written
