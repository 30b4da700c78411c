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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from medkd.distill.distributed import World, barrier, mean_across_ranks
from medkd.distill.embedding_cache import EmbeddingCache, entry_key, rank_of
from medkd.distill.sam_forward import decode_boxes
from torch import nn
from torch.utils.data import Dataset

from medkd.data import ObjectDataset, RowLoader, geometry_of
from medkd.data.cache import default_cache_dir
from medkd.data.preprocessing import Preprocessing
from medkd.data.manifest import ManifestRow
from medkd.data.progress import track
from medkd.data.prompts import box_mask, jitter_box, jitter_for, sample_points
from medkd.zoo.checkpoints import state_dict_digest
from medkd.zoo.registry import get_spec, split_model_ref

Target = Literal["embedding", "logits"]


def default_teacher_cache() -> Path:
    """``teacher-targets`` beside the preprocessing cache (``$MEDKD_CACHE_DIR`` etc.)."""
    return default_cache_dir().parent / "teacher-targets"


def teacher_identity(name: str, kwargs: dict[str, Any], model: nn.Module, target: Target, bf16: bool = False) -> dict[str, Any]:
    """Zoo name, builder arguments (all of them: see ``architecture_kwargs``), precision and a hash of
    the weights a target depends on.

    Embeddings depend on the image encoder alone, so a teacher whose mask decoder was adapted shares
    them with the teacher it came from; logits depend on every weight. Parts of the encoder the
    embedding never passes through (TinyViT's classification head) are left out.
    """
    spec = get_spec(name)
    if target == "embedding":
        unused = tuple(key.removeprefix("image_encoder.") for key in spec.unused_keys)
        weights = state_dict_digest(model.image_encoder, unused)
    else:
        weights = state_dict_digest(model, spec.unused_keys)
    identity = {"name": split_model_ref(name)[0], "kwargs": {**split_model_ref(name)[1], **kwargs}, "part": target, "weights_sha256": weights}
    if bf16:  # bf16 targets differ from fp32 ones: never mix them under one key
        identity["precision"] = "bf16"
    return identity


@dataclass
class TargetKeys:
    """The cache key of every row's target, in row order."""

    keys: list[str]
    target: Target = "embedding"

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
        return cls(keys, target)

    def owned(self, world: World) -> list[tuple[str, int]]:
        """This rank's share of the distinct keys, each with the first row that has it."""
        first: dict[str, int] = {}
        for index, key in enumerate(self.keys):
            first.setdefault(key, index)
        return [(key, index) for key, index in first.items() if rank_of(key, world.size) == world.rank]


def _fill(
    cache: EmbeddingCache,
    keys: TargetKeys,
    world: World,
    batch_size: int,
    compute: Callable[[list[int]], np.ndarray],
) -> dict[str, int]:
    """Compute this rank's missing entries of ``keys`` in batches of row indices; returns hits / misses."""
    if world.is_main:
        cache.clean()
    barrier(world)
    cache.refresh()
    mine = keys.owned(world)
    missing = [(key, index) for key, index in mine if key not in cache]
    writer = cache.writer(world.rank)
    batches = [missing[start : start + batch_size] for start in range(0, len(missing), batch_size)]
    for batch in track(batches, len(batches), f"teacher targets ({keys.target})", enabled=world.is_main):
        for (key, _), output in zip(batch, compute([index for _, index in batch])):
            writer.put(key, output)
    writer.close()
    counts = {"hits": float(len(mine) - len(missing)), "misses": float(len(missing))}
    total = {name: round(value * world.size) for name, value in mean_across_ranks(counts, world).items()}
    barrier(world)
    cache.refresh()
    if world.is_main:
        cache.record_stats("fill", {**total, "entries": len(set(keys.keys))})
    return total


def fill_cache(
    cache: EmbeddingCache,
    teacher: nn.Module,
    dataset: ObjectDataset,
    keys: TargetKeys,
    world: World,
    batch_size: int,
    bf16: bool = False,
    embeddings: TargetKeys | None = None,
) -> dict[str, int]:
    """Compute every missing target of ``keys`` (each rank its share of the keys), under bf16 autocast
    if asked. Logits are decoded from the cached ``embeddings`` of the same rows (filled first), so the
    heavy encoder runs once per image whatever the targets. Returns the hits / misses of ``keys``."""
    device = next(teacher.parameters()).device

    @torch.inference_mode()
    def encode(indices: list[int]) -> np.ndarray:
        images = torch.stack([dataset[index]["image"] for index in indices]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return teacher.image_encoder(images).float().cpu().numpy()

    @torch.inference_mode()
    def decode(indices: list[int]) -> np.ndarray:
        stored = [torch.from_numpy(np.asarray(cache.get(embeddings.keys[index]), dtype=np.float32)) for index in indices]
        boxes = torch.stack([dataset[index]["box"] for index in indices]).to(device)
        return decode_boxes(teacher, torch.stack(stored).to(device), boxes)[0].float().cpu().numpy()

    if keys.target == "embedding":
        return _fill(cache, keys, world, batch_size, encode)
    if embeddings is None:
        raise ValueError("logit targets are decoded from cached embeddings: pass their keys")
    _fill(cache, embeddings, world, batch_size, encode)
    return _fill(cache, keys, world, batch_size, decode)


def cached_targets(
    teacher: nn.Module,
    name: str,
    kwargs: dict[str, Any],
    target: Target,
    rows: list[ManifestRow],
    loader: RowLoader,
    preprocessing: Preprocessing,
    cache: EmbeddingCache,
    world: World,
    batch_size: int,
    bf16: bool = False,
) -> tuple[TargetKeys, dict[str, int]]:
    """The keys of ``rows``' targets, every one of them filled into ``cache``, and the fill's hits / misses
    (bf16 targets where ``bf16`` is asked and the device has it: :meth:`World.bf16`)."""
    bf16 = world.bf16(bf16)
    identity = teacher_identity(name, kwargs, teacher, "embedding", bf16)
    embeddings = TargetKeys.compute(rows, loader, identity, "embedding", preprocessing)
    keys = embeddings
    if target == "logits":
        keys = TargetKeys.compute(rows, loader, teacher_identity(name, kwargs, teacher, "logits", bf16), "logits", preprocessing)
    items = ObjectDataset(rows, loader, preprocessing)
    return keys, fill_cache(cache, teacher, items, keys, world, batch_size, bf16, embeddings)


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
