"""Objects of a label map: one per non-zero value, with its bounding box and area."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class LabelObject:
    """Label value, inclusive x0, y0, x1, y1 box and pixel count of one object on a 2D label map."""

    label: int
    box: tuple[int, int, int, int]
    area: int


def objects_2d(labels: np.ndarray) -> list[LabelObject]:
    """Every non-zero label of a 2D map, in increasing label order."""
    values, inverse = np.unique(labels, return_inverse=True)
    has_background = values[0] == 0
    ids = inverse.reshape(labels.shape) + (0 if has_background else 1)
    areas = np.bincount(ids.ravel(), minlength=len(values) + 1)
    objects = []
    for index, (rows, cols) in enumerate(ndimage.find_objects(ids), start=1):
        label = int(values[index if has_background else index - 1])
        box = (cols.start, rows.start, cols.stop - 1, rows.stop - 1)
        objects.append(LabelObject(label, box, int(areas[index])))
    return objects
