"""Which blocks cannot take INT8: quantize one block at a time and measure what it costs.

Each block (:mod:`medkd.quantize.nodes`) of the encoder and of the decoder is quantized alone, the rest
of the pipeline left FP32, and scored by how far it moves the pipeline's masks from the FP32 masks
(1 - mean agreement DSC) on validation objects, by the DSC it loses against ground truth there and by
the relative error of its graph's output. ``most_sensitive_first`` orders blocks for the DSC gate by
the masks' change: on a few objects the DSC against ground truth is noise (published LiteMedSAM, 16
objects: a block moving the embeddings by 0.95 relative "gained" 0.8 points) and the output errors of
an encoder and a decoder are not on one scale. A
:class:`SweepRecord` keeps each measurement on disk as it is made, so an interrupted sweep resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medkd.artifacts import sha256_json
from medkd.data.progress import track
from medkd.paths import cache_dir

# Bumped whenever what a sweep measures changes (scoring, lowering), so older records are not reused.
SWEEP_SCHEMA = 2
MEASURES = ("dsc_drop", "output_error", "mask_change")


@dataclass(frozen=True)
class BlockSensitivity:
    """What quantizing one block alone costs."""

    graph: str
    block: str
    nodes: int
    dsc_drop: float
    output_error: float
    mask_change: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep(
    blocks: dict[str, dict[str, list[str]]],
    measure: Callable[[str, str], tuple[float, float, float]],
    progress: bool = True,
) -> list[BlockSensitivity]:
    """Sensitivity of every block; ``measure(graph, block)`` returns (DSC drop, output error, mask change)."""
    units = [(graph, block, len(nodes)) for graph, graph_blocks in blocks.items() for block, nodes in graph_blocks.items()]
    results = []
    for graph, block, count in track(units, len(units), "sensitivity (one block at a time)", enabled=progress):
        results.append(BlockSensitivity(graph, block, count, *measure(graph, block)))
    return most_sensitive_first(results)


class SweepRecord:
    """Blocks one sweep has measured, one JSON line each under the cache folder, keyed by everything
    the measurements depend on (FP32 graphs, recipe, calibration and validation objects, crop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.measured: dict[str, tuple[float, float, float]] = {}
        lines = path.read_text().splitlines() if path.is_file() else []
        for line in lines:
            try:
                entry = json.loads(line)
                self.measured[entry["key"]] = tuple(float(entry[k]) for k in MEASURES)  # type: ignore[assignment]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short when the sweep was interrupted

    @classmethod
    def for_run(cls, identity: dict[str, Any]) -> SweepRecord:
        key = sha256_json({"schema": SWEEP_SCHEMA, **identity})[:24]
        return cls(cache_dir() / "quantize-sweep" / f"{key}.jsonl")

    def get(self, key: str) -> tuple[float, float, float] | None:
        return self.measured.get(key)

    def add(self, key: str, measured: tuple[float, float, float]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:  # writes append; only the last byte is read
            size = handle.seek(0, os.SEEK_END)
            if size:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")  # end the line an interruption cut short
            handle.write((json.dumps({"key": key, **dict(zip(MEASURES, measured, strict=True))}) + "\n").encode())
        self.measured[key] = measured


def most_sensitive_first(results: list[BlockSensitivity]) -> list[BlockSensitivity]:
    """Largest change of the masks first; equal changes by larger output error."""
    return sorted(results, key=lambda r: (round(r.mask_change, 6), r.output_error), reverse=True)
