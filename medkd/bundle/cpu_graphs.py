"""Which file of each graph a target's bundle carries: CPU targets the INT8 graph lowered for ONNX
Runtime's CPU integer kernels, GPU targets the symmetric Q/DQ graph TensorRT builds from.

``medkd quantize`` writes both (the lowered one named by the layout entry's ``cpu_file``); for an INT8
artifact made before it did, the lowered graph is written at packing time as ``GRAPH.cpu.onnx``. The
bundle manifest names the runtime of every graph file (:data:`medkd.bundle.schema.GRAPH_RUNTIMES`); the
variant's artifact manifest travels unchanged, files it lists that the target does not take left out,
and medkd's runtimes find a lowered graph by its layout entry or that name
(:func:`medkd.runtime.cpu_lowering.cpu_graph_file`).
"""

from __future__ import annotations

from pathlib import Path

from medkd.bundle.schema import GraphSpec
from medkd.bundle.targets import Target
from medkd.bundle.variants import PlannedVariant
from medkd.runtime.cpu_lowering import cpu_file_name, is_quantized, lowered_runtime, write_cpu_graph
from medkd.runtime.layout import read_onnx


def _carry_lowered(item: PlannedVariant, graph: GraphSpec, file: str, path: Path) -> None:
    """``graph`` of ``item`` as the lowered ``file`` (at ``path``), its Q/DQ files left out."""
    for name in graph.files:
        item.files.pop(name, None)
    graph.file, graph.files, graph.runtime = file, [file], lowered_runtime(read_onnx(path))


def _use_cpu_graphs(item: PlannedVariant, scratch: Path) -> None:
    """Each quantized graph of ``item`` as its CPU-lowered file: the artifact's own, else one written
    into ``scratch`` now."""
    entries = item.source.manifest.config["export"]["graphs"]
    for graph in item.variant.graphs:
        lowered = entries[graph.name].get("cpu_file")
        if lowered in item.files:
            _carry_lowered(item, graph, lowered, item.source.directory / lowered)
        elif item.variant.precision == "int8" and is_quantized(read_onnx(item.source.directory / graph.file)):
            lowered = cpu_file_name(graph.file)
            item.derived[lowered] = scratch / item.variant.name / lowered
            write_cpu_graph(item.source.directory / graph.file, item.derived[lowered])
            _carry_lowered(item, graph, lowered, item.derived[lowered])


def _drop_cpu_graphs(item: PlannedVariant) -> None:
    for entry in item.source.manifest.config["export"]["graphs"].values():
        item.files.pop(entry.get("cpu_file"), None)


def choose_graph_files(planned: list[PlannedVariant], target: Target, scratch: Path) -> None:
    """The graph files ``target`` runs, in place: lowered INT8 graphs for CPU targets, Q/DQ ones for GPU targets."""
    for item in planned:
        if item.variant.format != "onnx":
            continue
        if target.compute_capability is None:
            _use_cpu_graphs(item, scratch)
        else:
            _drop_cpu_graphs(item)
