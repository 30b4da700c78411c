"""Means a reader can compare: each dataset with its object count, the mean over datasets (with and
without those too small to count, which are flagged, never averaged in silently), and over objects."""

from __future__ import annotations

from typing import Any

MIN_OBJECTS = 20


def _mean(datasets: dict[str, dict[str, Any]], metrics: tuple[str, ...]) -> dict[str, Any]:
    means: dict[str, Any] = {}
    for metric in metrics:
        values = [d[metric] for d in datasets.values() if d.get(metric) is not None]
        means[metric] = sum(values) / len(values) if values else None
    return {**means, "datasets": sorted(datasets)}


def dataset_scores(summary: dict[str, Any], metrics: tuple[str, ...] = ("dsc", "nsd"), min_objects: int = MIN_OBJECTS) -> dict[str, Any]:
    """Per dataset means and object counts (``flagged`` under ``min_objects``), the mean over datasets,
    over the unflagged datasets, and over objects, of an evaluation summary (``medkd.metrics.summarize``)."""
    datasets = {}
    for name, stats in summary["by_dataset"].items():
        objects = max(stats[metric]["n"] for metric in metrics if metric in stats)
        values = {metric: stats[metric]["mean"] if metric in stats else None for metric in metrics}
        datasets[name] = {**values, "objects": objects, "flagged": objects < min_objects}
    overall = summary["overall"]
    return {
        "by_dataset": datasets,
        "mean_over_datasets": _mean(datasets, metrics),
        "mean_over_datasets_unflagged": _mean({n: d for n, d in datasets.items() if not d["flagged"]}, metrics),
        "mean_over_objects": {**{m: overall[m]["mean"] if m in overall else None for m in metrics}, "objects": summary["objects"]},
    }
