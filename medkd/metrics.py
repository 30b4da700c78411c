"""Segmentation metrics through MONAI: DSC, IoU, NSD, HD95 per object, and their aggregation.

NSD follows the CVPR24 "MedSAM on laptop" challenge: tolerance 2 mm in physical units from the
pixel spacing, surface elements weighted as DeepMind's surface-distance library does (MONAI's
``use_subvoxels``), and computed only where DSC > 0.2 (NSD 0 otherwise). Images without a known
spacing are measured in pixels (spacing 1). HD95 is in mm (pixels without spacing) and ``None``
when the prediction is empty.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import (
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    compute_surface_dice,
)

NSD_TOLERANCE_MM = 2.0
NSD_MIN_DSC = 0.2
METRICS = ("dsc", "iou", "nsd", "hd95")
AGREEMENT = ("agreement_dsc", "agreement_iou")


def _crop_to_union(pred: np.ndarray, truth: np.ndarray, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to their union's bounding box plus a background margin (distances are unchanged)."""
    union = pred | truth
    if not union.any():
        return pred, truth
    window = tuple(
        slice(max(int(idx.min()) - margin, 0), int(idx.max()) + margin + 1) for idx in np.nonzero(union)
    )
    return pred[window], truth[window]


def _batch(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(mask, dtype=bool)).float()[None, None]


def _scalar(value: torch.Tensor) -> float | None:
    number = float(value.reshape(-1)[0])
    return number if math.isfinite(number) else None


def overlap(pred: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """DSC and IoU of two binary masks; two empty masks agree fully (1.0)."""
    p, r = _batch(pred), _batch(reference)
    dice = compute_dice(p, r, include_background=True, ignore_empty=False)
    iou = compute_iou(p, r, include_background=True, ignore_empty=False)
    return float(dice), float(iou)


def segmentation_metrics(
    pred: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    spacing: Sequence[float] | None = None,
    tolerance_mm: float = NSD_TOLERANCE_MM,
) -> dict[str, float | None]:
    """DSC, IoU, NSD (at ``tolerance_mm``) and HD95 of a binary prediction against binary ground truth."""
    pred, truth = _crop_to_union(np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool))
    p, t = _batch(pred), _batch(truth)
    spacing = list(spacing) if spacing is not None else [1.0] * pred.ndim
    dsc, iou = overlap(pred, truth)
    nsd, hd95 = 0.0, None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        if dsc > NSD_MIN_DSC:
            nsd = _scalar(
                compute_surface_dice(p, t, [tolerance_mm], include_background=True, spacing=spacing, use_subvoxels=True)
            )
        if pred.any() and truth.any():
            hd95 = _scalar(compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=spacing))
    return {"dsc": dsc, "iou": iou, "nsd": nsd, "hd95": hd95}


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"mean": None, "median": None, "n": 0}
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "n": len(values)}


def aggregate(records: Iterable[Mapping[str, Any]], metrics: Sequence[str] = METRICS) -> dict[str, dict]:
    """Mean, median and count of each metric over records (``None`` values left out)."""
    records = list(records)
    return {
        name: _stats([r[name] for r in records if r.get(name) is not None])
        for name in metrics
        if any(name in r for r in records)
    }


def summarize(
    records: Iterable[Mapping[str, Any]], groups: Sequence[str] = ("dataset", "modality"), metrics: Sequence[str] = METRICS
) -> dict[str, Any]:
    """Aggregates overall and per value of each grouping key (``by_dataset``, ``by_modality``, ...)."""
    records = list(records)
    summary: dict[str, Any] = {"overall": aggregate(records, metrics), "objects": len(records)}
    for key in groups:
        values = sorted({r[key] for r in records})
        summary[f"by_{key}"] = {v: aggregate([r for r in records if r[key] == v], metrics) for v in values}
    return summary
