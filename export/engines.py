"""``medkd export tensorrt``: one engine per graph of an export artifact, plus an ``engines`` manifest.

SAM models build ``encoder`` and ``decoder_trt`` (the decoder without a shape-tensor input); U-Nets
build ``unet``. ``--onnx GRAPH=FILE`` swaps in another ONNX for a graph (the Q/DQ encoder from
``medkd quantize``); INT8 needs Q/DQ nodes in at least one graph.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from medkd.runtime.cpu_lowering import has_qdq
from medkd.runtime.layout import read_layout
from medkd.export.trt_profiles import EngineOptions, trtexec_command

from medkd.artifacts import Manifest, as_input, hash_files, write_manifest
from medkd.errors import BadInput

ENGINES_KIND = "engines"


def engine_graphs(layout: dict[str, Any]) -> tuple[str, ...]:
    return ("unet",) if layout["model"]["family"] == "unet" else ("encoder", "decoder_trt")


def plan_builds(export_dir: Path, out: Path, options: EngineOptions, overrides: dict[str, Path]) -> list[tuple[str, Path, Path, EngineOptions, bool]]:
    """(graph, onnx, engine, options with the graph's profile, has Q/DQ) for every engine to build."""
    layout = read_layout(export_dir)
    unknown = set(overrides) - set(engine_graphs(layout))
    if unknown:
        raise BadInput(f"--onnx names unknown graphs {', '.join(sorted(unknown))} (engines: {', '.join(engine_graphs(layout))})")
    builds = []
    for graph in engine_graphs(layout):
        onnx_path = overrides.get(graph, export_dir / layout["graphs"][graph]["file"])
        if not onnx_path.is_file():
            raise BadInput(f"{onnx_path} does not exist")
        graph_options = replace(options, profiles=layout["profiles"].get(graph, {}))
        builds.append((graph, onnx_path, out / f"{graph}.{options.precision}.plan", graph_options, has_qdq(onnx_path)))
    if options.precision == "int8" and not any(qdq for *_, qdq in builds):
        raise BadInput("int8 engines come from Q/DQ ONNX (explicit quantization): pass --onnx encoder=QDQ.onnx from medkd quantize")
    return builds


def trtexec_lines(export_dir: Path, out: Path, options: EngineOptions, overrides: dict[str, Path]) -> list[str]:
    return [trtexec_command(onnx_path, engine, graph_options, qdq) for _, onnx_path, engine, graph_options, qdq in plan_builds(export_dir, out, options, overrides)]


def build_engines(export_dir: Path, out: Path, options: EngineOptions, overrides: dict[str, Path]) -> Manifest:
    """Build every engine into ``out`` and write its manifest (last)."""
    from medkd.export.tensorrt_build import build_engine
    from medkd.runtime.tensorrt import import_tensorrt

    import_tensorrt()
    builds = plan_builds(export_dir, out, options, overrides)
    out.mkdir(parents=True, exist_ok=True)
    engines = {graph: build_engine(onnx_path, engine, graph_options, qdq) for graph, onnx_path, engine, graph_options, qdq in builds}
    layout = read_layout(export_dir)
    manifest = Manifest(
        kind=ENGINES_KIND,
        config={"export": layout, "engines": engines, "precision": options.precision},
        inputs=[as_input(export_dir)],
        files=hash_files(out, [entry["file"] for entry in engines.values()]),
    )
    return write_manifest(out, manifest)
