"""Quantized variants of an export's graphs, made on demand in a scratch folder and reused.

A variant is one graph with a set of blocks kept in float. ``Workbench.quantize`` makes it once (ONNX
Runtime from the activation ranges measured once per graph, or NNCF) and refuses it unless every
Q/DQ node is symmetric int8; ``Workbench.assemble`` lays chosen variants out as an export-layout
directory that ``OnnxSegmenter`` (and so ``medkd eval``) runs.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from medkd.runtime.cpu_lowering import WEIGHT_BITS_KEY
from medkd.runtime.onnx_runtime import cpu_session
from medkd.runtime.layout import EXPORT_KIND, stamp_metadata
from medkd.quantize.backends import nncf_quantize, ort_quantize
from medkd.quantize.calibration import Feed, activation_ranges
from medkd.quantize.fusion import unfused_nodes
from medkd.quantize.measure import MAIN_OUTPUT, graph_outputs
from medkd.quantize.nodes import (
    block_of,
    blocks,
    calibrated_nodes,
    movement_chains,
    quantizable_nodes,
)
from medkd.quantize.recipe import Recipe
from medkd.quantize.symmetry import require_symmetric
from onnxruntime.quantization.calibrate import (
    TensorsData,
    load_tensors_data,
    save_tensors_data,
)

from medkd.artifacts import Manifest, write_manifest

# The decoder_trt graph shares the decoder's modules and node names: it follows the decoder's choices.
FOLLOWS = {"decoder_trt": "decoder"}


def graph_names(layout: dict[str, Any]) -> tuple[str, ...]:
    """The graphs of an export that get quantized."""
    return ("unet",) if layout["model"]["family"] == "unet" else ("encoder", "decoder", "decoder_trt")


class Workbench:
    """The FP32 graphs of one export, their quantizable nodes and their quantized variants."""

    def __init__(self, export_dir: Path, layout: dict[str, Any], scratch: Path, recipe: Recipe, feeds: dict[str, list[Feed]], selected: tuple[str, ...] = (), ort_fusion: bool = True) -> None:
        self.export_dir = export_dir
        self.layout = layout
        self.scratch = scratch
        self.recipe = recipe
        self.feeds = feeds
        self.graphs = graph_names(layout)
        self.selected = selected or self.graphs
        self.ort_fusion = ort_fusion
        self.unfused: dict[str, set[str]] = {graph: set() for graph in self.graphs}
        self.fp32: dict[str, Path] = {}
        self.external: dict[str, bool] = {}
        self.candidates: dict[str, list[str]] = {}
        self.calibrated: dict[str, list[str]] = {}
        self.movements: dict[str, dict[str, list[str]]] = {}
        for graph in self.graphs:
            entry = layout["graphs"][graph]
            for name in entry["files"]:  # copies: quantizers write helper files beside their input
                shutil.copy2(export_dir / name, scratch / name)
            self.fp32[graph] = scratch / entry["file"]
            self.external[graph] = len(entry["files"]) > 1
            model = onnx.load(str(self.fp32[graph]), load_external_data=False)
            self.candidates[graph] = quantizable_nodes(model, recipe)
            self.calibrated[graph] = calibrated_nodes(model, recipe)
            self.movements[graph] = movement_chains(model, self.candidates[graph])
        self._ranges: dict[str, Path] = {}
        self._variants: dict[tuple[str, frozenset[str]], Path] = {}
        self._fp32_outputs: dict[tuple[str, str], list[np.ndarray]] = {}

    @property
    def unit_graphs(self) -> tuple[str, ...]:
        """Selected graphs whose blocks are decided on their own (``decoder_trt`` follows ``decoder``)."""
        return tuple(g for g in self.graphs if g not in FOLLOWS and g in self.selected)

    def blocks(self, graph: str) -> dict[str, list[str]]:
        return blocks(self.candidates[graph])

    def ranges(self, graph: str) -> TensorsData:
        """Activation ranges of ``graph`` on its calibration feeds, measured once."""
        return load_tensors_data(self._ranges_file(graph))

    def _ranges_file(self, graph: str) -> Path:
        if graph not in self._ranges:
            path = self.scratch / f"{graph}.ranges.json"
            save_tensors_data(activation_ranges(self.fp32[graph], self.feeds[graph], self.calibrated[graph], self.recipe.method, self.recipe.percentile), path)
            self._ranges[graph] = path
        return self._ranges[graph]

    def fp32_outputs(self, graph: str, split: str, feeds: list[Feed], threads: int) -> list[np.ndarray]:
        """The FP32 graph's main output on ``feeds`` (those of ``split``), computed once for the gate's
        sweep and the report."""
        if (graph, split) not in self._fp32_outputs:
            self._fp32_outputs[graph, split] = graph_outputs(cpu_session(self.fp32[graph], threads), MAIN_OUTPUT[graph], feeds)
        return self._fp32_outputs[graph, split]

    def nodes(self, graph: str, kept: set[str]) -> list[str]:
        """Candidate nodes of ``graph`` outside the blocks (or node names) in ``kept``."""
        return [n for n in self.candidates[graph] if n not in kept and block_of(n) not in kept]

    def quantize(self, graph: str, kept: set[str]) -> Path:
        """``graph`` quantized except ``kept``; the FP32 graph when nothing is left to quantize or the
        graph (or the graph it follows) was not selected. With ``ort_fusion``, nodes that ONNX Runtime
        cannot fuse are quantized no more (:mod:`medkd.quantize.fusion`) and remembered in ``unfused``."""
        nodes = [n for n in self.nodes(graph, kept) if n not in self.unfused[graph]]
        if not nodes or FOLLOWS.get(graph, graph) not in self.unit_graphs:
            return self.fp32[graph]
        key = (graph, frozenset(nodes))
        if key not in self._variants:
            target = self._quantize_nodes(graph, nodes)
            unfused = unfused_nodes(target, nodes) if self.ort_fusion else []
            if unfused:
                self.unfused[graph].update(unfused)
                return self.quantize(graph, kept)
            self._variants[key] = target
        return self._variants[key]

    def _quantize_nodes(self, graph: str, nodes: list[str]) -> Path:
        digest = hashlib.sha256("\n".join(sorted(nodes)).encode()).hexdigest()[:12]
        target = self.scratch / f"{graph}-{digest}.onnx"
        nodes = nodes + [m for node in nodes for m in self.movements[graph][node]]
        if self.recipe.backend == "ort":
            ort_quantize(self.fp32[graph], target, nodes, self.recipe, self._ranges_file(graph), self.feeds[graph], self.external[graph])
        else:
            nncf_quantize(self.fp32[graph], target, nodes, self.recipe, self.feeds[graph], self.external[graph])
        require_symmetric(target)
        if self.recipe.cpu_weight_bits != 7:  # the lowering's default: only a VNNI graph is marked
            stamp_metadata(target, {WEIGHT_BITS_KEY: str(self.recipe.cpu_weight_bits)})
        return target

    def assemble(self, chosen: dict[str, Path], name: str) -> Path:
        """An export-layout directory ``name`` with ``chosen`` graphs and FP32 for the others."""
        directory = self.scratch / name
        directory.mkdir(exist_ok=True)
        for graph, entry in self.layout["graphs"].items():
            source = chosen.get(graph, self.fp32.get(graph))
            link = directory / entry["file"]
            link.unlink(missing_ok=True)
            if source is None:
                continue
            link.symlink_to(source.resolve())  # the links live in another folder: relative targets would dangle
            data = source.with_name(f"{source.name}.data")  # external weights, named as the exporters name them
            if data.is_file():
                (directory / data.name).unlink(missing_ok=True)
                (directory / data.name).symlink_to(data.resolve())
        write_manifest(directory, Manifest(kind=EXPORT_KIND, config={"export": self.layout}))
        return directory
