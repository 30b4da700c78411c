"""Resizing without torch (medkd.data.resize) gives what torch and segment_anything give, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

from medkd.data.resize import bilinear, centre_indices, resize_longest


@pytest.mark.parametrize(("shape", "size"), [((3, 64, 64), (256, 256)), ((1, 256, 256), (511, 300)), ((3, 700, 512), (256, 256)), ((2, 37, 91), (1024, 77))])
def test_bilinear_is_torchs_bilinear(shape, size):
    """As PyTorch's generic CPU kernel computes it (several threads, height + width of the output over 128)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        array = (np.random.default_rng(0).standard_normal(shape) * 10).astype(np.float32)
        expected = F.interpolate(torch.from_numpy(array)[None], size, mode="bilinear", align_corners=False)[0].numpy()
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(bilinear(array, size), expected)


def test_longest_side_resize_is_segment_anythings():
    image = np.random.default_rng(1).integers(0, 255, (300, 451, 3), dtype=np.uint8)
    assert np.array_equal(resize_longest(image, 256), ResizeLongestSide(256).apply_image(image))


def test_centre_indices_are_nearest_exact():
    labels = np.arange(7 * 9, dtype=np.float32).reshape(1, 1, 7, 9)
    expected = F.interpolate(torch.from_numpy(labels), (20, 4), mode="nearest-exact")[0, 0].numpy()
    assert np.array_equal(labels[0, 0][np.ix_(centre_indices(7, 20), centre_indices(9, 4))], expected)
