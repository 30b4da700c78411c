"""Teacher, student and INT8 masks next to the ground truth, on sample test images of each modality.

The samples are the largest objects of each modality in the split. Each model is opened with
``medkd.evaluation.load_segmenter`` and predicts exactly as ``medkd eval`` does (ground-truth box
prompt, the run's crop mode, masks mapped back to original pixels); the panel shows a window of three
times the box around the object so small structures stay visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap

from medkd.data import ArrayCache, RowLoader, crop_region
from medkd.data.preprocessing import Preprocessing
from medkd.data.manifest import DataManifest, ManifestRow
from medkd.runtime import load_segmenter
from medkd.evaluation.runner import _predict
from medkd.metrics import overlap
from medkd.report.plot import figure_png, plt
from medkd.report.run import Artifact

MODEL_KINDS = ("teacher", "student", "model")
PANEL_CONTEXT = 3.0


@dataclass(frozen=True)
class Column:
    """A model shown in the panels: its label and the artifact it is loaded from."""

    label: str
    artifact: Artifact


@dataclass(frozen=True)
class Panel:
    """One sample object: its modality, the figure, and each model's DSC against the ground truth."""

    modality: str
    row_id: str
    png: bytes
    dsc: dict[str, float]


def _is_int8(artifact: Artifact) -> bool:
    layout = artifact.manifest.config.get("export", {})
    if artifact.manifest.kind != "export" or "graphs" not in layout:
        return False
    if layout.get("precision") == "int8":
        return True
    from medkd.runtime.cpu_lowering import has_qdq

    return any(has_qdq(artifact.path / entry["file"]) for entry in layout["graphs"].values() if (artifact.path / entry["file"]).is_file())


def model_columns(artifacts: list[Artifact]) -> list[Column]:
    """Teachers, then students (PyTorch artifacts), then INT8 exports."""
    columns = []
    for kind in MODEL_KINDS:
        columns += [Column(f"{kind} {a.model_name}", a) for a in artifacts if a.manifest.kind == kind and a.model_name]
    columns += [Column(f"INT8 {a.model_name}", a) for a in artifacts if _is_int8(a)]
    return columns


def modality_rows(manifest: DataManifest, split: str, per_modality: int) -> list[ManifestRow]:
    """The ``per_modality`` largest objects of each modality in ``split`` (``all``: every split)."""
    rows = manifest.select(None if split == "all" else split)
    by_modality: dict[str, list[ManifestRow]] = {}
    for row in rows:
        by_modality.setdefault(row.modality, []).append(row)
    return [row for modality in sorted(by_modality) for row in sorted(by_modality[modality], key=lambda r: -r.area)[:per_modality]]


def _overlay(axes: plt.Axes, image: np.ndarray, mask: np.ndarray, window: tuple[int, int, int, int], title: str, colour: str) -> None:
    y0, x0, y1, x1 = window
    axes.imshow(image[y0:y1, x0:x1], cmap="gray")
    region = mask[y0:y1, x0:x1].astype(float)
    axes.imshow(np.ma.masked_where(region == 0, region), cmap=ListedColormap([colour]), alpha=0.45, vmin=0, vmax=1)
    if region.any() and region.min() == 0:
        axes.contour(region, levels=[0.5], colors=[colour], linewidths=1.2)
    axes.set_title(title, fontsize=9)
    axes.axis("off")


def panel_png(image: np.ndarray, truth: np.ndarray, box: np.ndarray, predictions: list[tuple[str, np.ndarray, float]], caption: str) -> bytes:
    """Ground truth then every model's mask over the image, cropped around the object."""
    window = crop_region(truth.shape, box, context=PANEL_CONTEXT)
    figure, axes = plt.subplots(1, 1 + len(predictions), figsize=(2.6 * (1 + len(predictions)), 2.9), squeeze=False)
    _overlay(axes[0, 0], image, truth, window, "ground truth", "#2ca02c")
    for ax, (label, mask, dsc) in zip(axes[0, 1:], predictions):
        _overlay(ax, image, mask, window, f"{label}\nDSC {dsc:.3f}", "#d62728")
    figure.suptitle(caption, fontsize=9)
    return figure_png(figure, dpi=80)


def build_panels(
    manifest: DataManifest, columns: list[Column], split: str, per_modality: int, crop: str | None = None
) -> tuple[list[Panel], dict[str, Preprocessing]]:
    """One panel per sample object, every column's model predicting it with its own preprocessing
    (``crop`` overrides the trained crop); also the preprocessing each column ran with."""
    rows = modality_rows(manifest, split, per_modality)
    loader = RowLoader(manifest, ArrayCache(None))
    masks: dict[str, dict[str, np.ndarray]] = {}
    used: dict[str, Preprocessing] = {}
    for column in columns:
        segmenter = load_segmenter(str(column.artifact.path), device="cpu")
        used[column.label] = segmenter.preprocessing.with_crop(crop, source=column.label)
        masks[column.label] = {row.id: _predict(segmenter, [[row]], loader, "box", used[column.label], {})[row.id] for row in rows}
    panels = []
    for row in rows:
        truth = loader.mask(row)
        predictions = [(c.label, masks[c.label][row.id], overlap(masks[c.label][row.id], truth)[0]) for c in columns]
        caption = f"{row.modality}: {row.dataset} {Path(row.image).name}" + (f" slice {row.slice}" if row.slice is not None else "")
        png = panel_png(loader.image(row), truth, np.asarray(row.box), predictions, caption)
        panels.append(Panel(row.modality, row.id, png, {label: dsc for label, _, dsc in predictions}))
    return panels, used
