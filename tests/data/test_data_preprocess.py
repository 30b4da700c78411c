"""MedSAM intensity normalisation, SAM geometry and its inverse (round trips on each dataset's sizes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from segment_anything.utils.transforms import ResizeLongestSide

from medkd.data import (
    PIXEL_MEAN,
    PIXEL_STD,
    RowLoader,
    build_manifest,
    normalize_intensity,
    plan_geometry,
    to_rgb,
)
from medkd.data.geometry import crop_region
from medkd.errors import BadInput


def test_ct_in_hounsfield_units_is_windowed_at_level_40_width_400():
    hu = np.array([[-1000, -160, 40], [240, 1000, 140]], dtype=np.int16)
    assert normalize_intensity(hu, "CT").tolist() == [[0, 0, 128], [255, 255, 191]]


def test_ct_already_in_8_bit_is_kept_as_it_is():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert normalize_intensity(image, "CT") is image


def test_other_modalities_clip_the_foreground_percentiles():
    values = np.concatenate([np.zeros(50), np.arange(1, 1001)]).astype(np.float32)
    low, high = np.percentile(np.arange(1, 1001), [0.5, 99.5])
    out = normalize_intensity(values, "MR")
    assert out.dtype == np.uint8
    assert out[:50].tolist() == [0] * 50
    expected = np.rint((np.clip(values[50:], low, high) - low) * 255 / (high - low))
    assert np.array_equal(out[50:], expected.astype(np.uint8))
    assert normalize_intensity(np.full((4, 4), 7.0), "US").tolist() == [[0] * 4] * 4


def test_gray_becomes_three_equal_channels():
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    rgb = to_rgb(gray)
    assert rgb.shape == (2, 3, 3) and all(np.array_equal(rgb[..., c], gray) for c in range(3))


@pytest.mark.parametrize("shape", [(540, 800), (155, 225), (35, 51), (1100, 700)])
@pytest.mark.parametrize("size", [256, 1024])
def test_model_input_is_what_sam_preprocess_makes(shape, size):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    resized = torch.as_tensor(ResizeLongestSide(size).apply_image(image)).permute(2, 0, 1).float()
    normalised = (resized - torch.tensor(PIXEL_MEAN).view(3, 1, 1)) / torch.tensor(PIXEL_STD).view(3, 1, 1)
    expected = torch.nn.functional.pad(normalised, (0, size - resized.shape[2], 0, size - resized.shape[1]))
    geometry = plan_geometry(shape, size)
    assert torch.equal(geometry.image_to_model(image), expected)
    box = np.array([[10, 5, 30, 25]])
    assert np.allclose(geometry.boxes_to_model(box), ResizeLongestSide(size).apply_boxes(box, shape))


def _boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    structure = np.ones((2 * width + 1, 2 * width + 1), bool)
    return ndimage.binary_dilation(mask, structure) & ~ndimage.binary_erosion(mask, structure, border_value=1)


def _round_trip(mask: np.ndarray, geometry) -> np.ndarray:
    model = geometry.mask_to_model(mask.astype(np.uint8))
    return geometry.mask_to_original(torch.from_numpy(model)).numpy().astype(bool)


@pytest.fixture(scope="module")
def one_mask_per_size(shared_data):
    """For each dataset, one object mask for every distinct image (slice) size it has."""
    manifest = build_manifest(shared_data, progress=False)
    loader = RowLoader(manifest)
    chosen = {}
    for row in manifest.rows:
        chosen.setdefault((row.dataset, row.height, row.width), row)
    return [(key, loader.mask(row)) for key, row in sorted(chosen.items())]


@pytest.mark.data
def test_round_trip_is_exact_whenever_the_model_input_is_not_smaller(one_mask_per_size):
    checked = set()
    for (dataset, height, width), mask in one_mask_per_size:
        for size in (256, 1024):
            if max(height, width) <= size:
                geometry = plan_geometry(mask.shape, size)
                assert np.array_equal(_round_trip(mask, geometry), mask), (dataset, height, width, size)
                checked.add((dataset, size))
    assert {d for d, s in checked if s == 1024} == {"ct-organs", "fetal-head-us", "hippocampus-mri", "nuclei"}


@pytest.mark.data
def test_down_scaled_round_trip_only_moves_boundary_pixels(one_mask_per_size):
    for (dataset, height, width), mask in one_mask_per_size:
        geometry = plan_geometry(mask.shape, 256)
        scale = 256 / max(height, width)
        if scale >= 1:
            continue
        back = _round_trip(mask, geometry)
        band = _boundary_band(mask, math.ceil(1 / scale))
        assert not np.any((back != mask) & ~band), (dataset, height, width)
        assert np.count_nonzero(back != mask) < 0.25 * mask.sum() + 1


@pytest.mark.data
def test_box_crop_round_trip_is_exact_for_small_objects(shared_data):
    manifest = build_manifest(shared_data / "nuclei", progress=False)
    loader = RowLoader(manifest)
    rows = [r for r in manifest.rows if max(r.box[2] - r.box[0], r.box[3] - r.box[1]) < 64][::25]
    assert len(rows) > 100
    for row in rows:
        mask = loader.mask(row)
        geometry = plan_geometry(mask.shape, 256, "box", np.array(row.box))
        assert np.array_equal(_round_trip(mask, geometry), mask), row.id


def test_crop_window_holds_the_box_and_stays_inside_the_image():
    rng = np.random.default_rng(3)
    for _ in range(300):
        height, width = rng.integers(20, 400, size=2)
        x0, x1 = sorted(rng.integers(0, width, size=2))
        y0, y1 = sorted(rng.integers(0, height, size=2))
        top, left, bottom, right = crop_region((height, width), np.array([x0, y0, x1, y1]))
        assert 0 <= top <= y0 <= y1 < bottom <= height
        assert 0 <= left <= x0 <= x1 < right <= width
        side = max(2 * max(x1 - x0 + 1, y1 - y0 + 1), 64)
        assert bottom - top == min(side, height) and right - left == min(side, width)


def test_crop_maps_boxes_and_points_into_the_window():
    geometry = plan_geometry((400, 600), 256, "box", np.array([300, 200, 315, 209]))
    assert geometry.region == (173, 276, 237, 340)
    assert geometry.resized_size == (256, 256)
    assert np.allclose(geometry.boxes_to_model(np.array([[300, 200, 315, 209]])), [[96, 108, 156, 144]])
    logits = torch.full((256, 256), -5.0)
    logits[108:144, 96:160] = 5.0
    back = geometry.mask_to_original(logits) > 0
    assert back.shape == (400, 600)
    rows, cols = np.nonzero(back.numpy())
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (200, 208, 300, 315)


def test_unknown_crop_mode_is_bad_input():
    with pytest.raises(BadInput):
        plan_geometry((10, 10), 256, "centre")
    with pytest.raises(BadInput):
        plan_geometry((10, 10), 256, "box")
