"""Teacher-target cache: teacher embeddings (or mask logits) computed once, stored as fp16 in shards.

Layout of a cache directory::

    shards/<rank>-<time>-<random>.bin     raw little-endian fp16 arrays, one after another
    shards/<rank>-<time>-<random>.json    its index: SHA-256 of the .bin, and key -> offset, shape
    stats.json                            hits / misses of the last fill, lookups of the last training

Keys are SHA-256 of a JSON value naming the teacher (zoo name and a hash of its weights), the target
(``embedding`` or box-prompted ``logits``), the preprocessing (input size, crop mode and region,
pixel mean / std) and the content of the image (SHA-256 of its normalised uint8 pixels): a changed
teacher, image or preprocessing gives new keys and never reads stale entries.

Writes are atomic per shard: the ``.bin`` is written to a temporary file, fsync'ed and renamed, then its
index is written the same way; the index is the commit point. A crash (``kill -9``) leaves at most a
temporary file or a ``.bin`` without an index, both removed by :meth:`EmbeddingCache.clean` (run
before a fill, on one rank); the entries of that shard are recomputed. Under ``torchrun`` a fill
assigns each key to one rank (``int(key) % world size``) and every rank writes its own shard files,
so ranks never write the same entry or file.

Size: a 1024-px SAM embedding (256 x 64 x 64 fp16) is 2 MiB, so 100k images take 200 GiB (plus
under 0.1% of index); a 256-px stand-in embedding (256 x 16 x 16) takes 128 KiB. Shards are
independent immutable files whose index names only its own shard, so a cache larger than one disk
is split by moving whole shard pairs to other volumes (or object storage) and reading the union of
their indexes; nothing refers to a shard's location but its own index.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medkd.artifacts import (
    atomic_path,
    atomic_write_json,
    remove_stale_temporaries,
    sha256_file,
    sha256_json,
)
from medkd.errors import BadInput

CACHE_FORMAT = 1
SHARDS = "shards"
STATS_FILE = "stats.json"
DEFAULT_SHARD_BYTES = 256 << 20
_DTYPE = np.dtype("<f2")


def entry_key(description: dict[str, Any]) -> str:
    """The content address of one cache entry."""
    return sha256_json({"format": CACHE_FORMAT, **description})


def rank_of(key: str, world_size: int) -> int:
    """The rank that computes and writes ``key`` in a distributed fill."""
    return int(key[:15], 16) % world_size


@dataclass(frozen=True)
class Location:
    shard: str
    offset: int
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * _DTYPE.itemsize


class ShardWriter:
    """Buffers entries and writes them as one shard when ``shard_bytes`` are reached (and on ``close``)."""

    def __init__(self, cache: EmbeddingCache, rank: int, shard_bytes: int) -> None:
        self.cache = cache
        self.rank = rank
        self.shard_bytes = shard_bytes
        self._arrays: list[tuple[str, np.ndarray]] = []
        self._bytes = 0

    def put(self, key: str, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array, dtype=_DTYPE)
        self._arrays.append((key, data))
        self._bytes += data.nbytes
        if self._bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._arrays:
            return
        name = f"{self.rank:03d}-{time.time_ns()}-{secrets.token_hex(4)}"
        shard_dir = self.cache.directory / SHARDS
        entries, offset = {}, 0
        with atomic_path(shard_dir / f"{name}.bin") as tmp:
            with open(tmp, "wb") as handle:
                for key, data in self._arrays:
                    handle.write(data.tobytes())
                    entries[key] = [offset, list(data.shape)]
                    offset += data.nbytes
        index = {
            "format": CACHE_FORMAT,
            "dtype": _DTYPE.str,
            "bytes": offset,
            "sha256": sha256_file(shard_dir / f"{name}.bin"),
            "entries": entries,
        }
        atomic_write_json(shard_dir / f"{name}.json", index)
        for key, (entry_offset, shape) in entries.items():
            self.cache.index[key] = Location(name, entry_offset, tuple(shape))
        self._arrays, self._bytes = [], 0

    def close(self) -> None:
        self.flush()


class EmbeddingCache:
    """Read and write access to one cache directory."""

    def __init__(self, directory: str | os.PathLike, shard_bytes: int = DEFAULT_SHARD_BYTES) -> None:
        self.directory = Path(directory)
        self.shard_bytes = shard_bytes
        self.index: dict[str, Location] = {}
        self._maps: dict[str, np.memmap] = {}
        self.refresh()

    @property
    def shard_dir(self) -> Path:
        return self.directory / SHARDS

    def _indexes(self) -> list[Path]:
        return sorted(self.shard_dir.glob("*.json")) if self.shard_dir.is_dir() else []

    def refresh(self) -> None:
        """Re-read every committed shard index (after other ranks or processes wrote shards)."""
        self.index = {}
        for path in self._indexes():
            index = json.loads(path.read_text())
            for key, (offset, shape) in index["entries"].items():
                self.index[key] = Location(path.stem, int(offset), tuple(shape))

    def clean(self) -> list[Path]:
        """Remove what a crash left: temporaries and shard data without a committed index."""
        removed = remove_stale_temporaries(self.shard_dir)
        for data in sorted(self.shard_dir.glob("*.bin")) if self.shard_dir.is_dir() else []:
            if not data.with_suffix(".json").exists():
                data.unlink(missing_ok=True)
                removed.append(data)
        return removed

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __len__(self) -> int:
        return len(self.index)

    def get(self, key: str) -> np.ndarray:
        """The fp16 array stored under ``key`` (a read-only view of the shard)."""
        try:
            location = self.index[key]
        except KeyError:
            raise BadInput(f"teacher cache {self.directory} has no entry {key[:12]}: fill it first") from None
        shard = self._maps.get(location.shard)
        if shard is None:
            shard = np.memmap(self.shard_dir / f"{location.shard}.bin", dtype=_DTYPE, mode="r")
            self._maps[location.shard] = shard
        start = location.offset // _DTYPE.itemsize
        return shard[start : start + location.nbytes // _DTYPE.itemsize].reshape(location.shape)

    def writer(self, rank: int = 0) -> ShardWriter:
        return ShardWriter(self, rank, self.shard_bytes)

    # -- statistics and checks ---------------------------------------------------------------
    def read_stats(self) -> dict[str, Any]:
        path = self.directory / STATS_FILE
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return json.loads(path.read_text())
        return {}

    def record_stats(self, section: str, values: dict[str, Any]) -> None:
        """Replace one section (``fill`` or ``training``) of ``stats.json``."""
        stats = self.read_stats()
        stats[section] = values
        atomic_write_json(self.directory / STATS_FILE, stats)

    def info(self) -> dict[str, Any]:
        """Entries, shards, bytes on disk and the hit rate of the last fill."""
        shard_files = [p for p in self.shard_dir.iterdir() if p.is_file()] if self.shard_dir.is_dir() else []
        stats = self.read_stats()
        fill = stats.get("fill", {})
        looked_up = fill.get("hits", 0) + fill.get("misses", 0)
        return {
            "directory": str(self.directory),
            "entries": len(self.index),
            "shards": len(self._indexes()),
            "bytes": sum(p.stat().st_size for p in shard_files),
            "entry_bytes": sum(location.nbytes for location in self.index.values()),
            "hit_rate": fill.get("hits", 0) / looked_up if looked_up else None,
            "stats": stats,
        }

    def verify(self) -> list[str]:
        """Problems found by re-hashing every shard against its index (empty: the cache is sound)."""
        problems = []
        seen: dict[str, str] = {}
        for path in self._indexes():
            data = path.with_suffix(".bin")
            try:
                index = json.loads(path.read_text())
            except json.JSONDecodeError:
                problems.append(f"{path.name}: index is not valid JSON")
                continue
            if not data.is_file():
                problems.append(f"{path.name}: shard data {data.name} is missing")
                continue
            if data.stat().st_size != index["bytes"] or sha256_file(data) != index["sha256"]:
                problems.append(f"{data.name}: content does not match its index (SHA-256 or size)")
            for key, (offset, shape) in index["entries"].items():
                if offset + int(np.prod(shape)) * _DTYPE.itemsize > index["bytes"]:
                    problems.append(f"{path.name}: entry {key[:12]} lies outside the shard")
                if key in seen:
                    problems.append(f"{path.name}: entry {key[:12]} also in {seen[key]}")
                seen[key] = path.name
        if self.shard_dir.is_dir():
            for leftover in sorted(self.shard_dir.iterdir()):
                if leftover.suffix == ".tmp" or (leftover.suffix == ".bin" and not leftover.with_suffix(".json").exists()):
                    problems.append(f"{leftover.name}: partial file left by an interrupted write")
        return problems
