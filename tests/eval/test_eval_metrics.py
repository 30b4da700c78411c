"""Metrics with values known by construction, ground truth against itself, aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medkd.data import RowLoader, build_manifest
from medkd.metrics import overlap, segmentation_metrics, summarize


def _nested_squares(size=40):
    """A 20 x 20 square inside a 24 x 24 square, 2 px margin on every side."""
    inner = np.zeros((size, size), bool)
    inner[10:30, 10:30] = True
    outer = np.zeros((size, size), bool)
    outer[8:32, 8:32] = True
    return inner, outer


def test_overlap_of_nested_squares():
    inner, outer = _nested_squares()
    result = segmentation_metrics(inner, outer, (1.0, 1.0))
    assert result["dsc"] == pytest.approx(2 * 400 / (400 + 576))
    assert result["iou"] == pytest.approx(400 / 576)


@pytest.mark.parametrize("spacing", [1.0, 0.5, 3.0])
def test_hd95_of_nested_squares_scales_with_spacing(spacing):
    # Edge pixels of the inner square are all 2 px from the outer edge; of the outer square's 92
    # edge pixels 80 are 2 px away, 8 next to corners sqrt(5) and 4 corners sqrt(8): the 95th
    # percentile is sqrt(5) px.
    inner, outer = _nested_squares()
    assert segmentation_metrics(inner, outer, (spacing, spacing))["hd95"] == pytest.approx(math.sqrt(5) * spacing, rel=1e-5)


@pytest.mark.parametrize(
    ("spacing", "tolerance", "expected"),
    [
        ((0.5, 0.5), 2.0, 1.0),  # every boundary distance (<= sqrt(8) px = 1.41 mm) is within 2 mm
        ((1.0, 1.0), 1.0, 0.0),  # every boundary distance (>= 2 px = 2 mm) exceeds 1 mm
        ((1.5, 1.5), 2.0, 0.0),  # >= 3 mm
        ((1.0, 1.0), 3.0, 1.0),  # <= 2.83 mm
    ],
)
def test_nsd_of_nested_squares_at_tolerances_that_bracket_the_distances(spacing, tolerance, expected):
    inner, outer = _nested_squares()
    assert segmentation_metrics(inner, outer, spacing, tolerance_mm=tolerance)["nsd"] == pytest.approx(expected)


def test_nsd_is_zero_where_dsc_is_at_most_0_2():
    truth = np.zeros((50, 50), bool)
    truth[10:40, 10:40] = True
    touching = np.zeros_like(truth)
    touching[10:14, 10:14] = True
    result = segmentation_metrics(touching, truth, (1.0, 1.0))
    assert result["dsc"] < 0.2 and result["nsd"] == 0.0 and result["hd95"] is not None


def test_empty_prediction_and_empty_agreement():
    truth = np.zeros((10, 10), bool)
    truth[2:5, 2:5] = True
    assert segmentation_metrics(np.zeros_like(truth), truth) == {"dsc": 0.0, "iou": 0.0, "nsd": 0.0, "hd95": None}
    assert overlap(np.zeros_like(truth), np.zeros_like(truth)) == (1.0, 1.0)


@pytest.mark.data
def test_ground_truth_as_prediction_scores_perfectly_on_every_dataset(shared_data):
    manifest = build_manifest(shared_data, progress=False)
    loader = RowLoader(manifest)
    records = []
    for dataset in manifest.datasets:
        for row in manifest.select(datasets=[dataset])[:4]:
            mask = loader.mask(row)
            records.append({"dataset": row.dataset, "modality": row.modality, **segmentation_metrics(mask, mask, row.spacing)})
    assert {(r["dsc"], r["iou"], r["nsd"], r["hd95"]) for r in records} == {(1.0, 1.0, 1.0, 0.0)}
    summary = summarize(records)
    assert summary["objects"] == 16
    assert set(summary["by_dataset"]) == {"ct-organs", "fetal-head-us", "hippocampus-mri", "nuclei"}
    assert set(summary["by_modality"]) == {"CT", "US", "MR", "microscopy"}
    assert summary["overall"]["dsc"] == {"mean": 1.0, "median": 1.0, "n": 16}


def test_summary_groups_and_skips_missing_values():
    records = [
        {"dataset": "a", "modality": "CT", "dsc": 0.5, "hd95": None},
        {"dataset": "a", "modality": "CT", "dsc": 1.0, "hd95": 4.0},
        {"dataset": "b", "modality": "MR", "dsc": 0.0, "hd95": 2.0},
    ]
    summary = summarize(records, metrics=("dsc", "hd95"))
    assert summary["by_dataset"]["a"]["dsc"] == {"mean": 0.75, "median": 0.75, "n": 2}
    assert summary["by_dataset"]["a"]["hd95"] == {"mean": 4.0, "median": 4.0, "n": 1}
    assert summary["overall"]["hd95"]["mean"] == 3.0
    assert summary["by_modality"]["MR"]["dsc"]["mean"] == 0.0
