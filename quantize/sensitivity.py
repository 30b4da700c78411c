"""Which blocks cannot take INT8: quantize one block at a time and measure what it costs.

Each block (:mod:`medkd.quantize.nodes`) of the encoder and of the decoder is quantized alone, the rest
of the pipeline left FP32, and scored by the DSC it loses on validation objects and by the relative
error of its graph's output. ``most_sensitive_first`` orders blocks for the DSC gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from medkd.data.progress import track


@dataclass(frozen=True)
class BlockSensitivity:
    """What quantizing one block alone costs."""

    graph: str
    block: str
    nodes: int
    dsc_drop: float
    output_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep(
    blocks: dict[str, dict[str, list[str]]],
    measure: Callable[[str, str], tuple[float, float]],
    progress: bool = True,
) -> list[BlockSensitivity]:
    """Sensitivity of every block; ``measure(graph, block)`` returns (DSC drop, output error)."""
    units = [(graph, block, len(nodes)) for graph, graph_blocks in blocks.items() for block, nodes in graph_blocks.items()]
    results = []
    for graph, block, count in track(units, len(units), "sensitivity (one block at a time)", enabled=progress):
        dsc_drop, error = measure(graph, block)
        results.append(BlockSensitivity(graph, block, count, dsc_drop, error))
    return most_sensitive_first(results)


def most_sensitive_first(results: list[BlockSensitivity]) -> list[BlockSensitivity]:
    """Largest DSC drop first; equal drops (small validation sets) by larger output error."""
    return sorted(results, key=lambda r: (round(r.dsc_drop, 6), r.output_error), reverse=True)
