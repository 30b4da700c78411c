"""Host-side prompt encoding, mask choice and predictions, shared by every runtime.

SAM's prompt encoder takes points and box corners as one point list: points first (labels 1 / 0),
then the box corners (labels 2 and 3); without a box it appends one padding point (label -1), which
is what ``SamOnnxModel`` clients send too. The decoder returns four masks per prompt; like
``medkd eval`` (and ``SamPredictor`` users) a single point without a box takes the best of the three
multimask outputs by predicted IoU, anything else takes the single-mask output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_POINT = -1
BOX_LABELS = (2, 3)


@dataclass
class Prompts:
    """Prompts for the objects of one image, in model pixels: boxes ``(N, 4)`` or points ``(N, P, 2)``."""

    boxes: np.ndarray | None = None
    point_coords: np.ndarray | None = None
    point_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes) if self.boxes is not None else len(self.point_coords)


@dataclass
class Prediction:
    """A model's answer to the prompts of one image: mask logits ``(N, M, M)`` in model space and, for a
    model with a score head (SAM's IoU prediction), the score of each mask (``None`` otherwise)."""

    logits: np.ndarray
    scores: np.ndarray | None = None


def prompt_points(prompts: Prompts) -> tuple[np.ndarray, np.ndarray]:
    """``(N, P, 2)`` float32 coordinates and ``(N, P)`` float32 labels for ``prompts``."""
    coords, labels = [], []
    if prompts.point_coords is not None:
        coords.append(np.asarray(prompts.point_coords, np.float32))
        labels.append(np.asarray(prompts.point_labels, np.float32))
    if prompts.boxes is not None:
        boxes = np.asarray(prompts.boxes, np.float32).reshape(-1, 2, 2)
        coords.append(boxes)
        labels.append(np.broadcast_to(np.float32(BOX_LABELS), (len(boxes), 2)))
    else:
        count = len(coords[0])
        coords.append(np.zeros((count, 1, 2), np.float32))
        labels.append(np.full((count, 1), NO_POINT, np.float32))
    return np.ascontiguousarray(np.concatenate(coords, axis=1)), np.ascontiguousarray(np.concatenate(labels, axis=1))


def pad_points(coords: np.ndarray, labels: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad the point axis to ``slots`` with padding points, for decoders with a fixed point count."""
    missing = slots - coords.shape[1]
    if missing < 0:
        raise ValueError(f"{coords.shape[1]} points do not fit the decoder's {slots} point slots")
    pad_coords = np.zeros((len(coords), missing, 2), np.float32)
    pad_labels = np.full((len(labels), missing), NO_POINT, np.float32)
    return np.concatenate([coords, pad_coords], axis=1), np.concatenate([labels, pad_labels], axis=1)


def multimask(prompts: Prompts) -> bool:
    """Whether the best multimask output is wanted: a single point and no box."""
    return prompts.boxes is None and np.asarray(prompts.point_coords).shape[1] == 1


def mask_choice(scores: np.ndarray, prompts: Prompts) -> np.ndarray:
    """Which of the decoder's four masks each prompt takes, from its ``(N, 4)`` IoU predictions."""
    if multimask(prompts):
        return 1 + np.argmax(scores[:, 1:], axis=1)
    return np.zeros(len(scores), np.int64)


def select_masks(masks: np.ndarray, scores: np.ndarray, prompts: Prompts) -> np.ndarray:
    """``(N, M, M)`` from the decoder's ``(N, 4, M, M)`` masks and ``(N, 4)`` IoU predictions."""
    return masks[np.arange(len(masks)), mask_choice(scores, prompts)]
