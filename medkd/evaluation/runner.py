"""Evaluate a segmenter on manifest objects: batched prompted inference, masks mapped back to original
pixels, metrics against ground truth and, optionally, agreement with a teacher's masks.

Without cropping, the objects of one image share one encoder pass; with ``crop="box"`` every object is
its own input (a window around its box). Ground-truth boxes are the box prompts; point prompts are the
object pixel farthest from its boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import groupby
from pathlib import Path

import numpy as np
import torch

from medkd.data.datasets import PromptKind
from medkd.data.loading import RowLoader
from medkd.data.manifest import ManifestRow
from medkd.data.preprocessing import Preprocessing
from medkd.data.progress import track
from medkd.data.prompts import centre_point
from medkd.evaluation.reference_masks import ReferenceMasks
from medkd.runtime.prompts import Prompts
from medkd.runtime.segmenter import Segmenter
from medkd.metrics import AGREEMENT, METRICS, overlap, segmentation_metrics, summarize


@dataclass
class EvalResult:
    """Per-object records and their summary (overall, by dataset, by modality)."""

    records: list[dict]
    summary: dict
    preprocessing: Preprocessing


def _units(rows: list[ManifestRow], crop: str) -> list[list[ManifestRow]]:
    """Groups of rows that share one model input: an image's objects, or each object alone."""
    if crop == "box":
        return [[row] for row in rows]
    ordered = sorted(rows, key=lambda r: (r.image, -1 if r.slice is None else r.slice))
    return [list(group) for _, group in groupby(ordered, key=lambda r: r.image_key)]


def _batches(units: list[list[ManifestRow]], size: int) -> Iterator[list[list[ManifestRow]]]:
    for start in range(0, len(units), size):
        yield units[start : start + size]


def _predict(
    segmenter: Segmenter,
    batch: list[list[ManifestRow]],
    loader: RowLoader,
    prompt: PromptKind,
    preprocessing: Preprocessing,
    truths: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Binary masks in original pixels for every row of ``batch``, keyed by row id."""
    inputs, prompts, geometries = [], [], []
    for unit in batch:
        image = loader.image(unit[0])
        geometry = preprocessing.plan(image.shape[:2], np.asarray(unit[0].box))
        inputs.append(geometry.image_to_model(image))
        geometries.append(geometry)
        if prompt == "box":
            prompts.append(Prompts(boxes=geometry.boxes_to_model(np.array([r.box for r in unit]))))
        else:
            coords = np.stack([geometry.points_to_model(centre_point(truths[r.id])) for r in unit])
            prompts.append(Prompts(point_coords=coords, point_labels=np.ones(coords.shape[:2], dtype=np.int64)))
    logits = segmenter(torch.stack(inputs), prompts)
    masks: dict[str, np.ndarray] = {}
    for unit, geometry, unit_logits in zip(batch, geometries, logits):
        for row, row_logits in zip(unit, unit_logits.float().cpu()):
            masks[row.id] = (geometry.mask_to_original(row_logits) > 0).numpy()
    return masks


def _reference(
    teacher: Segmenter,
    batch: list[list[ManifestRow]],
    loader: RowLoader,
    prompt: PromptKind,
    preprocessing: Preprocessing,
    truths: dict[str, np.ndarray],
    stored: ReferenceMasks | None,
) -> dict[str, np.ndarray]:
    """The teacher's masks of ``batch``: from ``stored`` where every object of a unit is there, else computed (and stored)."""
    masks: dict[str, np.ndarray] = {}
    missing = []
    for unit in batch:
        found = {row.id: stored.get(row) for row in unit} if stored is not None else {}
        if found and all(mask is not None for mask in found.values()):
            masks.update(found)  # type: ignore[arg-type]
        else:
            missing.append(unit)
    if missing:
        computed = _predict(teacher, missing, loader, prompt, preprocessing, truths)
        if stored is not None:
            for row in (row for unit in missing for row in unit):
                stored.put(row, computed[row.id])
        masks.update(computed)
    return masks


def evaluate(
    segmenter: Segmenter,
    rows: list[ManifestRow],
    loader: RowLoader,
    prompt: PromptKind = "box",
    crop: str | None = None,
    batch_size: int = 4,
    teacher: Segmenter | None = None,
    progress: bool = True,
    reference_dir: Path | None = None,
    keep_own: bool = True,
) -> EvalResult:
    """Metrics of ``segmenter`` on ``rows`` (and agreement with ``teacher`` when given).

    Each model runs with its own preprocessing; ``crop`` overrides the crop ``segmenter`` was trained
    with (with a warning when it differs), and the teacher runs with the same crop as the student.
    With ``reference_dir``, the teacher's masks are read from there where present, and every model's
    masks are kept there for later evaluations against it (:mod:`reference_masks`; ``keep_own=False``:
    the teacher's only, for a model nobody will compare with).
    """
    preprocessing = segmenter.preprocessing.with_crop(crop, source=segmenter.name)
    reference_preprocessing = replace(teacher.preprocessing, crop=preprocessing.crop) if teacher else None
    stored = own = None
    if reference_dir is not None:
        own = ReferenceMasks(reference_dir, segmenter, preprocessing, prompt) if keep_own else None
        if teacher is not None:
            stored = ReferenceMasks(reference_dir, teacher, reference_preprocessing, prompt)  # type: ignore[arg-type]
    units = _units(rows, preprocessing.crop)
    records: list[dict] = []
    batches = _batches(units, batch_size)
    total = -(-len(units) // batch_size)
    for batch in track(batches, total, f"evaluating {segmenter.name}", enabled=progress):
        truths = {row.id: loader.mask(row) for unit in batch for row in unit}
        predicted = _predict(segmenter, batch, loader, prompt, preprocessing, truths)
        reference = _reference(teacher, batch, loader, prompt, reference_preprocessing, truths, stored) if teacher else None  # type: ignore[arg-type]
        for row in (row for unit in batch for row in unit):
            if own is not None:
                own.put(row, predicted[row.id])
            record = {
                "id": row.id,
                "dataset": row.dataset,
                "modality": row.modality,
                "subject": row.subject,
                "label": row.label,
                "area": row.area,
                "spacing_mm": row.spacing is not None,
                **segmentation_metrics(predicted[row.id], truths[row.id], row.spacing),
            }
            if reference is not None:
                record["agreement_dsc"], record["agreement_iou"] = overlap(predicted[row.id], reference[row.id])
            records.append(record)
    metrics = METRICS + (AGREEMENT if teacher else ())
    return EvalResult(records, summarize(records, metrics=metrics), preprocessing)
