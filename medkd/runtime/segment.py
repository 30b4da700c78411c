"""``medkd segment``: one image (or NIfTI slice), one or more prompted objects, their masks.

The image goes through exactly ``medkd eval``'s steps: MedSAM intensity normalisation (by modality),
three channels, the model's own preprocessing (its crop window around each box for a model trained
with ``crop: box``, resize, normalise, pad), prompts mapped to model pixels, the segmenter, and logits
mapped back to original pixels and thresholded at 0. Everything here is numpy: the runtime install
(no torch) runs it.

Objects are given by boxes (several per call) or, for one object, by points (with at most one box).
Each object gets a record for scripts: area, the box around its mask, and a score (SAM's predicted IoU;
for a model without a score head, the mean foreground probability inside its mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medkd.data.intensity import normalize_intensity, to_rgb
from medkd.data.readers import DEFAULT_AXIS, read_image
from medkd.errors import BadInput
from medkd.runtime.prompts import Prompts

PREDICTED_IOU, MEAN_PROBABILITY = "predicted_iou", "mean_probability"


@dataclass
class SegmentedObject:
    """One prompted object in original pixels: its logits (``-inf`` outside the model's window) and score."""

    prompt: dict[str, Any]
    logits: np.ndarray
    predicted_iou: float | None

    @property
    def mask(self) -> np.ndarray:
        return self.logits > 0

    def record(self, number: int) -> dict[str, Any]:
        """``{"object", "area", "box", "score", "score_kind", "prompt"}``; ``box`` (x0, y0, x1, y1, ends
        inclusive) is ``None`` for an empty mask, as is a mean probability's ``score``."""
        mask = self.mask
        rows, cols = np.nonzero(mask)
        box = [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())] if rows.size else None
        if self.predicted_iou is not None:
            score, kind = round(self.predicted_iou, 4), PREDICTED_IOU
        else:
            inside = self.logits[mask].astype(np.float64)
            score, kind = (round(float(np.mean(1 / (1 + np.exp(-inside)))), 4) if inside.size else None), MEAN_PROBABILITY
        return {"object": number, "area": int(rows.size), "box": box, "score": score, "score_kind": kind, "prompt": self.prompt}


def load_slice(path: Path, modality: str, slice_index: int | None, axis: int = DEFAULT_AXIS) -> np.ndarray:
    """``(H, W, 3)`` uint8 image as ``RowLoader.image`` gives it (a whole volume normalised, then sliced)."""
    try:
        decoded = read_image(path, axis)
    except BadInput as exc:
        raise BadInput(f"{path}: {exc}") from exc
    if decoded.array.ndim not in (2, 3) or 0 in decoded.array.shape or (decoded.array.ndim == 3 and not decoded.volume and decoded.array.shape[2] != 3):
        raise BadInput(f"{path}: an image of shape {decoded.array.shape} is neither gray, RGB nor a volume")
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


def _units(boxes: np.ndarray | None, points: np.ndarray | None, labels: np.ndarray | None, crop: str) -> list[tuple[np.ndarray | None, Prompts, list[dict]]]:
    """Model inputs to run: (the box that places a crop window, prompts in original pixels, prompt records)."""
    if points is not None:
        box = None if boxes is None else boxes[0]
        record = {"points": points.tolist(), "labels": labels.tolist(), **({"box": box.tolist()} if box is not None else {})}  # type: ignore[union-attr]
        return [(box, Prompts(boxes=None if box is None else box[None], point_coords=points[None], point_labels=labels[None]), [record])]
    records = [{"box": box.tolist()} for box in boxes]  # type: ignore[union-attr]
    if crop == "box":
        return [(box, Prompts(boxes=box[None]), [record]) for box, record in zip(boxes, records)]  # type: ignore[arg-type]
    return [(None, Prompts(boxes=boxes), records)]


def segment_objects(
    segmenter: Any,
    rgb: np.ndarray,
    boxes: np.ndarray | None,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    crop: str | None = None,
) -> list[SegmentedObject]:
    """The objects of ``rgb`` that ``boxes`` (``(N, 4)``) or ``points`` (one object, with at most one box)
    prompt, with eval's pre- and post-processing and the segmenter's preprocessing (``crop`` overrides
    its trained crop, with a warning when different). A crop-window model runs one window per box."""
    if boxes is None and points is None:
        raise BadInput("give a --box or at least one --point")
    if points is not None and boxes is not None and len(boxes) > 1:
        raise BadInput("--point prompts one object: give at most one --box with it")
    preprocessing = segmenter.preprocessing.with_crop(crop, source=segmenter.source)
    if preprocessing.crop == "box" and boxes is None:
        raise BadInput(f"{segmenter.source} runs with crop 'box' (the window around the object's box): give a --box, or --crop none")
    objects = []
    for window_box, prompts, records in _units(boxes, points, labels, preprocessing.crop):
        geometry = preprocessing.plan(rgb.shape[:2], window_box)
        in_model = Prompts(
            boxes=None if prompts.boxes is None else geometry.boxes_to_model(prompts.boxes),
            point_coords=None if prompts.point_coords is None else geometry.points_to_model(prompts.point_coords),
            point_labels=prompts.point_labels,
        )
        (prediction,) = segmenter.predict(geometry.image_to_model_array(rgb)[None], [in_model])
        logits = geometry.mask_to_original_array(prediction.logits)
        for index, record in enumerate(records):
            score = None if prediction.scores is None else float(prediction.scores[index])
            objects.append(SegmentedObject(record, logits[index], score))
    return objects


def segment_image(
    segmenter: Any, rgb: np.ndarray, box: np.ndarray | None, points: np.ndarray | None, labels: np.ndarray | None, crop: str | None = None
) -> np.ndarray:
    """Binary ``(H, W)`` mask of the one object ``box`` and / or ``points`` prompt (see :func:`segment_objects`)."""
    return segment_objects(segmenter, rgb, None if box is None else np.asarray(box)[None], points, labels, crop)[0].mask


def label_map(objects: list[SegmentedObject]) -> np.ndarray:
    """One object: 0 / 1. Several: each pixel the number (1..N) of the object with the highest logit
    there, 0 where none is positive; uint8, or uint16 past 255 objects."""
    logits = np.stack([o.logits for o in objects])
    labels = np.where(logits.max(axis=0) > 0, logits.argmax(axis=0) + 1, 0)
    return labels.astype(np.uint8 if len(objects) < 256 else np.uint16)


def parse_box(text: str) -> np.ndarray:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not np.all(np.isfinite(values)) or values[0] > values[2] or values[1] > values[3]:
        raise BadInput(f"--box must be x0,y0,x1,y1 with x0 <= x1 and y0 <= y1, not '{text}'")
    return np.array(values)


def parse_boxes(texts: list[str], size: tuple[int, int]) -> np.ndarray | None:
    """``(N, 4)`` boxes from ``--box`` values, each inside an image of ``size`` (H, W)."""
    if not texts:
        return None
    boxes = np.stack([parse_box(text) for text in texts])
    height, width = size
    for text, (x0, y0, x1, y1) in zip(texts, boxes):
        if x1 < 0 or y1 < 0 or x0 > width - 1 or y0 > height - 1:
            raise BadInput(f"--box {text} lies outside the {width} x {height} image")
    return boxes


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
        if len(parts) > 3 or label not in (0, 1) or not np.isfinite([x, y]).all():
            raise BadInput(f"--point must be x,y[,label] with label 1 (object) or 0 (background), not '{text}'")
        points.append((x, y))
        labels.append(label)
    return np.array(points), np.array(labels, np.int64)
