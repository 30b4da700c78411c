"""Segment a volume slice by slice from a 3D box, as LiteMedSAM's CVPR24 inference does.

An object is prompted by a 3D box (x0, y0, z0, x1, y1, z1, ends inclusive; z indexes the volume's slice
axis) or by a 2D box on a key slice. The first slice segmented is the box's middle slice
(``z0 + (z1 - z0) // 2``, the challenge's rule) or the key slice, prompted by the box's x / y extent;
then propagation runs upwards to ``z1`` and downwards to ``z0`` (to the volume's ends for a key slice),
each slice prompted by the box around the previous slice's mask, and stops in a direction at the first
empty mask. (The challenge's script falls back to the 3D box on an empty slice and goes on to the box's
ends; stopping keeps false positives off the slices past the object.)

Encoder passes are batched: every slice of an object is encoded in the same geometry, planned from its
prompt box (for a model trained on box crops, the window around the 3D box's x / y extent), so a slice's
input does not depend on the box propagated to it. Slices are encoded ``batch`` at a time in the order
propagation reaches them, once per geometry: objects whose geometries agree (every object of a
whole-image model) share the encodings. At most ``capacity`` embeddings are kept (the least recently
used go first), so a long CT series does not hold one embedding per slice in memory; one evicted and
needed again is encoded again. Everything is numpy on the segmenter's ``embed`` /
``predict_embedded``, so the runtime install (ONNX Runtime, no torch) runs it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medkd.data.geometry import Geometry
from medkd.data.intensity import to_rgb
from medkd.data.preprocessing import Preprocessing
from medkd.errors import BadInput
from medkd.runtime.prompts import Prompts

Decode = Callable[[int, np.ndarray, Sequence[int]], np.ndarray]
Advance = Callable[[int], None]
DEFAULT_CAPACITY = 128  # embeddings kept per volume: 512 MB at SAM's 256 x 64 x 64 float32


@dataclass(frozen=True)
class VolumePrompt:
    """One object: ``box`` (x0, y0, x1, y1) on slice ``start``; propagation reaches slices ``first``-``last``."""

    box: np.ndarray
    start: int
    first: int
    last: int
    record: dict[str, Any]

    @property
    def slices(self) -> int:
        return self.last - self.first + 1


def box3d_prompt(box3d: Sequence[float], depth: int) -> VolumePrompt:
    """A 3D box's prompt: its x / y extent on its middle slice, propagation within its z range."""
    x0, y0, z0, x1, y1, z1 = (float(v) for v in box3d)
    first, last = max(int(round(z0)), 0), min(int(round(z1)), depth - 1)
    if first > last:
        raise BadInput(f"--box3d {','.join(f'{v:g}' for v in box3d)} lies outside slices 0-{depth - 1}")
    return VolumePrompt(np.array([x0, y0, x1, y1]), first + (last - first) // 2, first, last, {"box3d": [float(v) for v in box3d]})


def key_slice_prompt(box: np.ndarray, key: int, depth: int) -> VolumePrompt:
    """A 2D box on slice ``key``: propagation reaches the whole volume."""
    if not 0 <= key < depth:
        raise BadInput(f"--slice {key} is outside 0-{depth - 1}")
    return VolumePrompt(np.asarray(box, dtype=np.float64), key, 0, depth - 1, {"box": np.asarray(box).tolist(), "slice": key})


def mask_box(mask: np.ndarray) -> np.ndarray:
    """x0, y0, x1, y1 (inclusive) of a non-empty 2D mask."""
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float64)


def propagate(decode: Decode, prompt: VolumePrompt, advance: Advance = lambda steps: None) -> dict[int, np.ndarray]:
    """Logits ``(H, W)`` of every slice the object reaches, keyed by slice.

    ``decode(z, box, ahead)`` returns slice ``z``'s logits for a 2D box (``ahead``: the slices this
    direction may reach next, for batching); ``advance(n)`` is told of every slice done or skipped.
    """
    reached: dict[int, np.ndarray] = {}
    upwards, downwards = list(range(prompt.start + 1, prompt.last + 1)), list(range(prompt.start - 1, prompt.first - 1, -1))
    start = decode(prompt.start, prompt.box, upwards)
    advance(1)
    if not (start > 0).any():
        advance(len(upwards) + len(downwards))
        return reached
    reached[prompt.start] = start
    for direction in (upwards, downwards):
        box = mask_box(start > 0)
        for index, z in enumerate(direction):
            logits = decode(z, box, direction[index + 1 :])
            advance(1)
            mask = logits > 0
            if not mask.any():
                advance(len(direction) - index - 1)
                break
            reached[z] = logits
            box = mask_box(mask)
    return reached


class SliceEncoder:
    """The slices of one volume (``(D, H, W)`` gray or ``(D, H, W, 3)`` RGB uint8) encoded in batches, once
    per geometry while at most ``capacity`` embeddings are kept."""

    def __init__(self, segmenter: Any, volume: np.ndarray, batch: int = 8, capacity: int = DEFAULT_CAPACITY) -> None:
        self.segmenter = segmenter
        self.volume = volume
        self.batch = max(int(batch), 1)
        self.capacity = max(int(capacity), self.batch)
        self.encoded = 0
        self._embedded: OrderedDict[tuple[Geometry, int], np.ndarray] = OrderedDict()

    def embedding(self, geometry: Geometry, z: int, ahead: Sequence[int] = ()) -> np.ndarray:
        """Slice ``z``'s embedding in ``geometry``; when missing, encoded with the next of ``ahead``."""
        key = (geometry, z)
        if key not in self._embedded:
            pending = [s for s in (z, *ahead) if (geometry, s) not in self._embedded][: self.batch]
            inputs = np.stack([geometry.image_to_model_array(to_rgb(self.volume[s])) for s in pending])
            for s, embedded in zip(pending, self.segmenter.embed(inputs)):
                self._embedded[(geometry, s)] = embedded
            self.encoded += len(pending)
            while len(self._embedded) > self.capacity:
                self._embedded.popitem(last=False)
        self._embedded.move_to_end(key)
        return self._embedded[key]

    def decoder(self, preprocessing: Preprocessing, prompt: VolumePrompt) -> Decode:
        """``decode(z, box, ahead)`` for :func:`propagate`: slice logits in original pixels."""
        geometry = preprocessing.plan(self.volume.shape[1:3], prompt.box)

        def decode(z: int, box: np.ndarray, ahead: Sequence[int]) -> np.ndarray:
            embedded = self.embedding(geometry, z, ahead)
            (prediction,) = self.segmenter.predict_embedded(embedded[None], [Prompts(boxes=geometry.boxes_to_model(box[None]))])
            return geometry.mask_to_original_array(prediction.logits)[0]

        return decode


@dataclass
class SegmentedVolume:
    """A label volume ``(D, H, W)`` (object numbers 1..N, each voxel the object with the highest logit)
    and a record per object."""

    labels: np.ndarray
    records: list[dict[str, Any]]


def _record(number: int, voxels: np.ndarray, prompt: VolumePrompt, spacing: Sequence[float] | None) -> dict[str, Any]:
    """``{"object", "voxels", "volume_ml", "box3d", "slices", "prompt"}`` of an object's final voxels."""
    zs, ys, xs = np.nonzero(voxels)
    box = [int(xs.min()), int(ys.min()), int(zs.min()), int(xs.max()), int(ys.max()), int(zs.max())] if zs.size else None
    volume_ml = None if spacing is None else round(float(zs.size * np.prod(spacing)) / 1000, 4)
    slices = int(np.unique(zs).size)
    return {"object": number, "voxels": int(zs.size), "volume_ml": volume_ml, "box3d": box, "slices": slices, "prompt": prompt.record}


def segment_volume(
    segmenter: Any,
    volume: np.ndarray,
    prompts: Sequence[VolumePrompt],
    crop: str | None = None,
    spacing: Sequence[float] | None = None,
    batch: int = 8,
    advance: Advance = lambda steps: None,
) -> SegmentedVolume:
    """Objects ``prompts`` of ``volume`` (``(D, H, W)`` uint8, eval's intensity normalisation) as a
    label volume; ``crop`` overrides the segmenter's trained crop (with a warning when different)."""
    if not prompts:
        raise BadInput("give a --box3d, or --box with --slice as the key slice")
    preprocessing = segmenter.preprocessing.with_crop(crop, source=segmenter.source)
    encoder = SliceEncoder(segmenter, volume, batch)
    best = np.full(volume.shape[:3], -np.inf, np.float32)
    labels = np.zeros(volume.shape[:3], np.uint8 if len(prompts) < 256 else np.uint16)
    for number, prompt in enumerate(prompts, start=1):
        for z, logits in propagate(encoder.decoder(preprocessing, prompt), prompt, advance).items():
            wins = (logits > 0) & (logits > best[z])
            best[z][wins] = logits[wins]
            labels[z][wins] = number
    records = [_record(number, labels == number, prompt, spacing) for number, prompt in enumerate(prompts, start=1)]
    return SegmentedVolume(labels, records)
