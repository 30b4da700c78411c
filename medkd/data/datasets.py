"""Torch datasets of manifest objects, for training (augmented) and evaluation, deterministic by seed.

Each item is one object: its image mapped into the model input (optionally a box-centred crop), the
object mask in model space, a box prompt and point prompts in model pixels, and what is needed to map
predictions back (``region``, ``original_size``). Training adds random flips, MedSAM's box jitter and
random points; the randomness of item ``i`` in epoch ``e`` comes from ``(seed, e, i)`` alone, so any
worker count and order gives the same items.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medkd.data.geometry import Geometry
from medkd.data.loading import RowLoader
from medkd.data.manifest import ManifestRow
from medkd.data.preprocessing import Preprocessing
from medkd.data.prompts import centre_point, jitter_box, jitter_for, sample_points

PromptKind = Literal["box", "point"]
PROMPTS = ("box", "point")


def _flip(image: np.ndarray, mask: np.ndarray, box: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flip image, mask and box along array axis 0 (vertical) or 1 (horizontal)."""
    extent = mask.shape[axis] - 1
    low, high = (1, 3) if axis == 0 else (0, 2)
    box = box.copy()
    box[low], box[high] = extent - box[high], extent - box[low]
    return np.flip(image, axis).copy(), np.flip(mask, axis).copy(), box


class ObjectDataset(Dataset):
    """One item per manifest row (object)."""

    def __init__(
        self,
        rows: list[ManifestRow],
        loader: RowLoader,
        preprocessing: Preprocessing,
        train: bool = False,
        seed: int = 0,
        points: tuple[int, int] = (1, 0),
    ) -> None:
        self.rows = rows
        self.loader = loader
        self.preprocessing = preprocessing
        self.input_size = preprocessing.input_size
        self.train = train
        self.seed = seed
        self.points = points
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call once per epoch while training)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.rows[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, mask = self.loader.image(row), self.loader.mask(row)
        box = np.asarray(row.box, dtype=np.float64)
        if self.train:
            for axis in (0, 1):
                if rng.random() < 0.5:
                    image, mask, box = _flip(image, mask, box, axis)
        geometry = self.preprocessing.plan(mask.shape, box)
        model_box = geometry.boxes_to_model(box[None])[0]
        if self.train:
            model_box = jitter_box(model_box, jitter_for(self.input_size), geometry.resized_size, rng)
            coords, labels = sample_points(mask, *self.points, rng, box)
        else:
            coords, labels = centre_point(mask), np.ones(1, dtype=np.int64)
        return {
            "image": geometry.image_to_model(image),
            "mask": torch.from_numpy(geometry.mask_to_model(mask.astype(np.uint8))).float()[None],
            "box": torch.from_numpy(model_box).float(),
            "point_coords": torch.from_numpy(geometry.points_to_model(coords)).float(),
            "point_labels": torch.from_numpy(labels),
            "region": torch.tensor(geometry.region),
            "original_size": torch.tensor(geometry.original_size),
            "index": torch.tensor(index),
        }


def geometry_of(item: dict[str, torch.Tensor], preprocessing: Preprocessing) -> Geometry:
    """The geometry of a (non-batched) dataset item, to map predictions back to original pixels."""
    region = tuple(item["region"].tolist())
    return Geometry(tuple(item["original_size"].tolist()), region, preprocessing.input_size, preprocessing.resize, preprocessing.normalization)


def make_loader(
    dataset: ObjectDataset, batch_size: int, shuffle: bool = False, seed: int = 0, num_workers: int = 0
) -> DataLoader:
    """A DataLoader whose shuffling order is fixed by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers)
