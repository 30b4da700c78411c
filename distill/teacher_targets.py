"""What the teacher gives a student, computed once into the embedding cache and read back while training.

Targets are ``embedding`` (the teacher's image embedding, for encoder distillation) or ``logits`` (the
teacher's low-resolution mask logits under the object's ground-truth box, for SAM-to-U-Net). They are
computed on the un-augmented input (as MobileSAM caches them): training items read from the cache
are never flipped, so image and target always agree; box prompts are jittered in model space only,
which leaves the image (and so the target embedding) untouched.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from medkd.distill.distributed import World, barrier, mean_across_ranks
from medkd.distill.embedding_cache import EmbeddingCache, entry_key, rank_of
from medkd.distill.sam_forward import decode_boxes
from torch import nn
from torch.utils.data import Dataset

from medkd.artifacts import sha256_file
from medkd.data import ObjectDataset, RowLoader, geometry_of
from medkd.data.preprocessing import Preprocessing
from medkd.data.manifest import ManifestRow
from medkd.data.progress import track
from medkd.data.prompts import box_mask, jitter_box, jitter_for, sample_points
from medkd.zoo.artifact import artifact_model_ref

Target = Literal["embedding", "logits"]


def state_dict_digest(model: nn.Module) -> str:
    """SHA-256 over a model's parameter names, shapes and bytes (for weights that have no file)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def teacher_identity(name: str, checkpoint: str | None, kwargs: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """Zoo name, builder arguments and weights hash: what makes two teachers give the same targets."""
    if checkpoint is None:
        weights = state_dict_digest(model)
    else:
        weights = artifact_model_ref(checkpoint)[3] if Path(checkpoint).is_dir() else sha256_file(checkpoint)
    return {"name": name, "kwargs": kwargs, "weights_sha256": weights}


@dataclass
class TargetKeys:
    """The cache key of every row's target, in row order."""

    keys: list[str]

    @classmethod
    def compute(
        cls, rows: list[ManifestRow], loader: RowLoader, teacher: dict[str, Any], target: Target, preprocessing: Preprocessing
    ) -> TargetKeys:
        hashes: dict[tuple, str] = {}
        keys = []
        spec = {key: value for key, value in preprocessing.to_dict().items() if key != "rules"}
        for row in rows:
            image = loader.image(row)
            if row.image_key not in hashes:
                content = hashlib.sha256(str(image.shape).encode())
                content.update(np.ascontiguousarray(image).tobytes())
                hashes[row.image_key] = content.hexdigest()
            geometry = preprocessing.plan(image.shape[:2], np.asarray(row.box))
            description: dict[str, Any] = {
                "teacher": teacher,
                "target": target,
                "preprocessing": {**spec, "region": list(geometry.region)},
                "image_sha256": hashes[row.image_key],
            }
            if target == "logits":
                description["box"] = [round(float(v), 4) for v in geometry.boxes_to_model(np.asarray(row.box)[None])[0]]
            keys.append(entry_key(description))
        return cls(keys)


@torch.inference_mode()
def teacher_outputs(teacher: nn.Module, target: Target, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Embeddings ``(B, 256, g, g)`` or low-resolution logits ``(B, 1, 4g, 4g)`` of a SAM teacher."""
    embeddings = teacher.image_encoder(images)
    if target == "embedding":
        return embeddings
    return decode_boxes(teacher, embeddings, boxes)[0]


def fill_cache(
    cache: EmbeddingCache,
    teacher: nn.Module,
    target: Target,
    dataset: ObjectDataset,
    keys: TargetKeys,
    world: World,
    batch_size: int,
    bf16: bool = False,
) -> dict[str, int]:
    """Compute every missing target (under bf16 autocast if asked); each rank computes the keys assigned
    to it. Returns hits / misses."""
    if world.is_main:
        cache.clean()
    barrier(world)
    cache.refresh()
    first: dict[str, int] = {}
    for index, key in enumerate(keys.keys):
        first.setdefault(key, index)
    mine = [(key, index) for key, index in first.items() if rank_of(key, world.size) == world.rank]
    missing = [(key, index) for key, index in mine if key not in cache]
    device = next(teacher.parameters()).device
    writer = cache.writer(world.rank)
    batches = [missing[start : start + batch_size] for start in range(0, len(missing), batch_size)]
    for batch in track(batches, len(batches), f"teacher targets ({target})", enabled=world.is_main):
        items = [dataset[index] for _, index in batch]
        images = torch.stack([item["image"] for item in items]).to(device)
        boxes = torch.stack([item["box"] for item in items]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = teacher_outputs(teacher, target, images, boxes).float().cpu().numpy()
        for (key, _), output in zip(batch, outputs):
            writer.put(key, output)
    writer.close()
    counts = {"hits": float(len(mine) - len(missing)), "misses": float(len(missing))}
    total = {name: round(value * world.size) for name, value in mean_across_ranks(counts, world).items()}
    barrier(world)
    cache.refresh()
    if world.is_main:
        cache.record_stats("fill", {**total, "entries": len(first)})
    return total


class CachedTargetDataset(Dataset):
    """Un-augmented items at the student's input size, with the cached teacher target of each.

    Training randomness (fixed by ``(seed, epoch, index)``): the box prompt is jittered as MedSAM does,
    a U-Net box channel is drawn from that box, and for prompt-in-the-loop training one positive point
    is sampled and the item is prompted by its box with probability ``box_fraction``.
    """

    def __init__(
        self, items: ObjectDataset, keys: TargetKeys, cache: EmbeddingCache, seed: int, box_fraction: float = 1.0
    ) -> None:
        self.items = items
        self.keys = keys.keys
        self.cache = cache
        self.seed = seed
        self.box_fraction = box_fraction
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index, 7])
        size = self.items.input_size
        geometry = geometry_of(item, self.items.preprocessing)
        box = jitter_box(item["box"].numpy(), jitter_for(size), geometry.resized_size, rng)
        mask = item["mask"][0].numpy() > 0.5
        coords, labels = sample_points(mask, 1, 0, rng)
        return {
            **item,
            "box": torch.from_numpy(box).float(),
            "box_channel": torch.from_numpy(box_mask(box, size))[None],
            "point_coords": torch.from_numpy(coords).float(),
            "point_labels": torch.from_numpy(labels),
            "use_box": torch.tensor(bool(rng.random() < self.box_fraction)),
            "target": torch.from_numpy(np.asarray(self.cache.get(self.keys[index]), dtype=np.float32)),
        }
