"""Which manifest rows a training stage uses, and how often each is drawn."""

from __future__ import annotations

from collections import Counter

import torch

from medkd.data.manifest import ManifestRow


def sampled(rows: list[ManifestRow], count: int) -> list[ManifestRow]:
    """About ``count`` rows evenly spaced through ``rows`` (none when ``count`` is 0)."""
    return rows[:: max(1, len(rows) // count)] if rows and count > 0 else []


def capped_per_dataset(rows: list[ManifestRow], limit: int | None) -> list[ManifestRow]:
    """At most ``limit`` rows of each dataset, evenly spaced through it (all rows when ``None``)."""
    if limit is None:
        return rows
    by_dataset: dict[str, list[ManifestRow]] = {}
    for row in rows:
        by_dataset.setdefault(row.dataset, []).append(row)
    return [row for group in by_dataset.values() for row in sampled(group, limit)[:limit]]


def dataset_balancing_weights(datasets: list[str]) -> torch.Tensor:
    """Per-item weights that give every dataset the same share of draws, whatever its size."""
    counts = Counter(datasets)
    return torch.tensor([1.0 / counts[name] for name in datasets], dtype=torch.float64)
