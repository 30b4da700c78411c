"""Volumetric evaluation, as the CVPR24 "MedSAM on laptop" challenge scores 3D images.

Each labelled object of a volume (a volume file and a label, among the evaluated slice rows) is
prompted by the 3D bounding box of its ground truth and segmented slice by slice from the box's middle
slice outwards (:mod:`medkd.runtime.volume`); its 3D mask is scored against the ground truth in 3D: DSC,
IoU, NSD at 2 mm and HD95 in mm with the volume's own spacing (slice axis included), through MONAI
(:func:`medkd.metrics.segmentation_metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any

import numpy as np

from medkd.data.loading import RowLoader
from medkd.data.manifest import ManifestRow
from medkd.data.progress import progress_bar
from medkd.data.readers import DEFAULT_AXIS, volume_spacing
from medkd.metrics import METRICS, segmentation_metrics, summarize
from medkd.runtime.volume import SegmentedVolume, box3d_prompt, segment_volume

PROMPT = "the 3D bounding box of the object's ground truth: its middle slice first, then outwards, each slice's box from the previous slice's mask, stopping at an empty mask"


@dataclass
class VolumeEval:
    """Per-volume-object records and their summary."""

    records: list[dict[str, Any]]
    summary: dict[str, Any]


def volume_objects(rows: list[ManifestRow]) -> list[list[ManifestRow]]:
    """The slice rows of each object of a volume (same image, mask, axis and label), in manifest order."""
    sliced = [row for row in rows if row.slice is not None]
    key = lambda row: (row.image, row.mask, -1 if row.axis is None else row.axis, row.label)  # noqa: E731
    return [list(group) for _, group in groupby(sorted(sliced, key=key), key=key)]


def volumes_of(rows: list[ManifestRow]) -> list[list[list[ManifestRow]]]:
    """:func:`volume_objects` grouped by volume."""
    return [list(group) for _, group in groupby(volume_objects(rows), key=lambda rows: (rows[0].image, rows[0].mask, rows[0].axis))]


def bounding_box3d(mask: np.ndarray) -> np.ndarray:
    """x0, y0, z0, x1, y1, z1 (inclusive) of a non-empty ``(D, H, W)`` mask."""
    zs, ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()])


def segment_from_truth(
    segmenter: Any, gray: np.ndarray, truths: list[np.ndarray], crop: str | None, spacing: tuple[float, ...] | None, batch: int = 8
) -> SegmentedVolume:
    """The objects whose ground truths are ``truths`` (``(D, H, W)`` masks), each prompted by its 3D box."""
    prompts = [box3d_prompt(bounding_box3d(truth), len(gray)) for truth in truths]
    return segment_volume(segmenter, gray, prompts, crop, spacing, batch)


def volume_spacing_of(loader: RowLoader, row: ManifestRow) -> tuple[float, ...] | None:
    """The spacing (mm, slice axis first) of ``row``'s volume."""
    return volume_spacing(loader.manifest.resolve(row.image), DEFAULT_AXIS if row.axis is None else row.axis)


def evaluate_volumes(segmenter: Any, rows: list[ManifestRow], loader: RowLoader, crop: str | None = None, batch: int = 8, progress: bool = True) -> VolumeEval:
    """3D metrics of ``segmenter`` on every volume object of ``rows``; one encoder pass per slice and
    geometry serves the objects of a volume (:func:`medkd.runtime.volume.segment_volume`)."""
    records = []
    by_volume = volumes_of(rows)
    with progress_bar(sum(map(len, by_volume)), f"evaluating {segmenter.name} per volume", enabled=progress) as advance:
        for objects in by_volume:
            first = objects[0][0]
            gray, labels = loader.normalized(first), loader.labels(first)
            spacing = volume_spacing_of(loader, first)
            truths = [labels == rows[0].label for rows in objects]
            result = segment_from_truth(segmenter, gray, truths, crop, spacing, batch)
            for number, (object_rows, truth) in enumerate(zip(objects, truths), start=1):
                row = object_rows[0]
                records.append(
                    {
                        "id": f"{row.image}#{row.label}",
                        "dataset": row.dataset,
                        "modality": row.modality,
                        "subject": row.subject,
                        "label": row.label,
                        "slices": int(np.unique(np.nonzero(truth)[0]).size),
                        "voxels": int(truth.sum()),
                        "box3d": bounding_box3d(truth).tolist(),
                        "spacing_mm": None if spacing is None else list(spacing),
                        **segmentation_metrics(result.labels == number, truth, spacing),
                    }
                )
                advance(1)
    return VolumeEval(records, summarize(records, metrics=METRICS))
