"""One volume of the split as three orthogonal planes: the ground truth, then each model's label volume.

The volume is the first of the split (manifest order) with labelled objects; every object is prompted by
its ground truth's 3D box and propagated slice by slice, as ``medkd eval`` scores volumes
(:mod:`medkd.evaluation.volumes`), with each model's own preprocessing (``crop`` overrides it).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from medkd.data import ArrayCache, RowLoader
from medkd.data.manifest import DataManifest
from medkd.evaluation.volumes import segment_from_truth, volume_spacing_of, volumes_of
from medkd.metrics import overlap
from medkd.report import html
from medkd.runtime import load_segmenter
from medkd.runtime.volume_view import orthogonal_view


def _png(gray: np.ndarray, labels: np.ndarray, spacing: tuple[float, ...] | None) -> bytes:
    buffer = io.BytesIO()
    orthogonal_view(gray, labels, spacing).save(buffer, format="PNG")
    return buffer.getvalue()


def volume_figures(manifest: DataManifest, models: list[tuple[str, str]], split: str, crop: str | None = None) -> str:
    """HTML: the ground truth's and each model's (label, what ``load_segmenter`` opens) orthogonal planes of
    the split's first volume, with each object's 3D DSC."""
    volumes = volumes_of(manifest.select(None if split == "all" else split))
    if not volumes:
        return html.paragraph(f"No volume in the {split} split.")
    objects = volumes[0]
    first = objects[0][0]
    loader = RowLoader(manifest, ArrayCache(None))
    gray, labels, spacing = loader.normalized(first), loader.labels(first), volume_spacing_of(loader, first)
    truths = [labels == rows[0].label for rows in objects]
    truth_labels = np.zeros(labels.shape, np.uint8)
    for number, truth in enumerate(truths, start=1):
        truth_labels[truth] = number
    name = f"{first.dataset} {Path(first.image).name}"
    figures = [html.image(_png(gray, truth_labels, spacing), f"ground truth of {name}", f"ground truth: {name}, {len(truths)} objects")]
    for label, model in models:
        result = segment_from_truth(load_segmenter(model, device="cpu"), gray, truths, crop, spacing)
        dsc = [overlap(result.labels == number, truth)[0] for number, truth in enumerate(truths, start=1)]
        caption = f"{label}: 3D DSC " + ", ".join(f"{rows[0].label_name or rows[0].label} {d:.3f}" for rows, d in zip(objects, dsc))
        figures.append(html.image(_png(gray, result.labels, spacing), f"{label} on {name}", caption))
    intro = html.paragraph(
        f"{name} ({' x '.join(map(str, gray.shape))} voxels, slices first), three planes through the objects' centre; each object "
        "prompted by its ground truth's 3D box, segmented from the box's middle slice outwards (as medkd eval scores volumes)."
    )
    return intro + "".join(figures)
