"""``medkd quantize``: an export artifact in, an export-layout artifact of symmetric int8 Q/DQ graphs out.

1. Calibration feeds from train-split objects of a data manifest (:mod:`medkd.quantize.calibration`);
   validation and test objects for the DSC gate and the report.
2. Every quantizable node quantized by the recipe; with ``max_dsc_drop`` the validation DSC of the
   whole pipeline is compared with FP32 and, if it drops more, the fewest most sensitive blocks (from a
   one-block-at-a-time sweep, resumable) go back to float (:mod:`medkd.quantize.gate`).
3. The output keeps the export layout (``medkd eval``, ``medkd segment`` and ``medkd export tensorrt``
   take it unchanged) and adds ``config.quantization`` and ``metrics.quantization``: output errors,
   DSC / NSD against FP32 on val and test, sizes, ONNX Runtime latency FP32 vs INT8, the blocks kept in
   float and why. TensorRT calibration caches (``GRAPH.calib``) come from the same statistics. Each INT8
   graph is also written lowered for ONNX Runtime's CPU integer kernels (``GRAPH.cpu.onnx``, named by
   its layout entry's ``cpu_file``): the Q/DQ file is what TensorRT builds from, the lowered one is what
   ONNX Runtime on a CPU runs at full speed without medkd.

``precision="fp16"`` writes FP16 graphs instead (:mod:`medkd.quantize.fp16`), measured the same way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import onnx
from medkd.runtime.cpu_lowering import cpu_file_name, is_quantized, write_cpu_graph
from medkd.runtime.layout import EXPORT_KIND, graph_entry, graph_metadata, read_layout, read_onnx, stamp_metadata
from medkd.runtime.onnx_runtime import cpu_session
from medkd.quantize.calibration import (
    Objects,
    amax,
    graph_feeds,
    model_inputs,
    spread_rows,
    unet_feeds,
)
from medkd.quantize.fp16 import convert_fp16
from medkd.quantize.gate import Gate, kept_report
from medkd.quantize.measure import (
    MAIN_OUTPUT,
    output_error,
    segmentation_scores,
    side_by_side_latency,
)
from medkd.quantize.nodes import block_of, float_by_recipe
from medkd.quantize.options import QuantizeOptions
from medkd.quantize.sensitivity import SweepRecord
from medkd.quantize.symmetry import QDQ_OPS, require_symmetric
from medkd.quantize.trt_cache import write_calibration_cache
from medkd.quantize.workbench import FOLLOWS, Workbench, graph_names

from medkd import __version__
from medkd.artifacts import (
    MANIFEST_NAME,
    ArtifactInput,
    Manifest,
    as_input,
    hash_files,
    sha256_file,
    write_manifest,
)
from medkd.data import ArrayCache, RowLoader, default_cache_dir, load_manifest
from medkd.data.preprocessing import Preprocessing
from medkd.errors import BadInput, MedkdError
from medkd.zoo import recorded_preprocessing

TRT_CACHE_GRAPHS = ("encoder", "decoder_trt", "unet")


def _check_inputs(export_dir: Path, layout: dict[str, Any], selected: tuple[str, ...]) -> None:
    unknown = set(selected) - set(graph_names(layout))
    if unknown:
        raise BadInput(f"--graphs names {', '.join(sorted(unknown))}; this export has {', '.join(graph_names(layout))}")
    for graph in graph_names(layout):
        path = export_dir / layout["graphs"][graph]["file"]
        require_symmetric(path)
        model = onnx.load(str(path), load_external_data=False)
        if any(node.op_type in QDQ_OPS for node in model.graph.node):
            raise BadInput(f"{path} is already quantized (it has Q/DQ nodes); quantize the FP32 export")


def _objects(manifest, split: str, count: int, layout: dict[str, Any], loader: RowLoader, encoder, preprocessing: Preprocessing, progress: bool) -> Objects:
    rows = spread_rows(manifest, count, split)
    if not rows:
        raise BadInput(f"the data manifest has no objects in split '{split}'")
    images, prompts = model_inputs(rows, loader, preprocessing)
    if layout["model"]["family"] == "unet":
        return Objects(rows, {"unet": unet_feeds(images, prompts, preprocessing.input_size)})
    return Objects(rows, graph_feeds(encoder, images, prompts, int(layout["prompts"]["point_slots"]), progress))


def _calibration_and_measurement_objects(
    export_dir: Path, layout: dict[str, Any], manifest, loader: RowLoader, options: QuantizeOptions, preprocessing: Preprocessing
) -> tuple[Objects, dict[str, Objects]]:
    """Calibration objects, and validation / test objects, made by ``preprocessing``; the FP32 encoder
    session that made their decoder feeds is released on return (a 1024-px encoder holds GiBs)."""
    encoder = None if layout["model"]["family"] == "unet" else cpu_session(export_dir / layout["graphs"]["encoder"]["file"], options.threads)
    calibration = _objects(manifest, options.calib_split, options.samples, layout, loader, encoder, preprocessing, options.progress)
    splits = {split: _objects(manifest, split, count, layout, loader, encoder, preprocessing, False) for split, count in (("val", options.gate_samples), ("test", options.test_samples))}
    return calibration, splits


def _write_trt_caches(bench: Workbench, out: Path, version: str) -> dict[str, int]:
    written = {}
    for graph in bench.graphs:
        if graph in TRT_CACHE_GRAPHS:
            written[f"{graph}.calib"] = len(write_calibration_cache(out / f"{graph}.calib", amax(bench.ranges(graph)), version))
    return written


def _count_quantized(path: Path) -> int:
    """Nodes of a graph that read a dequantized weight (0 for a float graph)."""
    model = onnx.load(str(path), load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    return sum(1 for n in model.graph.node if n.op_type != "DequantizeLinear" and dequantized & set(n.input))


def _unfused_report(bench: Workbench) -> list[dict[str, Any]]:
    reason = "ONNX Runtime (CPU) cannot fuse it into an integer kernel: as Q/DQ it would run slower than FP32"
    return [{"graph": g, "block": block_of(node), "node": node, "reason": reason} for g in bench.graphs for node in sorted(bench.unfused[g])]


def _sweep_record(bench: Workbench, calibration: Objects, val: Objects, data: Path, options: QuantizeOptions) -> SweepRecord:
    """Where this run's sensitivity sweep keeps its measurements: the same graphs, recipe, objects and
    crop (a rerun after an interruption) find them again."""
    return SweepRecord.for_run(
        {
            "fp32": {graph: sha256_file(bench.fp32[graph]) for graph in bench.graphs},
            "preprocessing": bench.layout["preprocessing"],
            "recipe": options.recipe.to_dict(),
            "crop": options.crop,
            "graphs": options.graphs,
            "ort_fusion": options.ort_fusion,
            "data": sha256_file(data),
            "calibration": [row.id for row in calibration.rows],
            "validation": [row.id for row in val.rows],
            "medkd": __version__,
        }
    )


def _choose_int8(bench: Workbench, val: Objects, loader: RowLoader, options: QuantizeOptions, fp32_val: dict[str, Any], record: SweepRecord) -> tuple[dict[str, Path], dict[str, Any]]:
    """INT8 variants of every graph with the blocks the gate keeps in float, and what decided them."""
    forced = set(options.keep_float)
    gate = Gate(bench, val, loader, options, float(fp32_val["dsc"] or 0.0), record, fp32_val["dsc_by_object"])
    if options.sweep:
        gate.run_sweep()
    kept = gate.hold({g: set(forced) for g in bench.unit_graphs})
    chosen = {g: bench.quantize(g, kept.get(FOLLOWS.get(g, g), set())) for g in bench.graphs}
    details: dict[str, Any] = {
        "kept_in_float": kept_report(kept, forced, gate.sensitivity) + _unfused_report(bench),
        "gate": {
            "max_dsc_drop": options.max_dsc_drop,
            "confidence": options.gate_confidence,
            "fp32_val_dsc": gate.fp32_dsc,
            "steps": gate.history,
            "chosen_step": gate.chosen_step,
        },
        "quantized_nodes": {g: _count_quantized(chosen[g]) for g in bench.graphs},
        "float_by_recipe": {g: float_by_recipe(onnx.load(str(bench.fp32[g]), load_external_data=False), options.recipe) for g in bench.graphs},
    }
    if gate.sensitivity is not None:
        details["sensitivity"] = [s.to_dict() for s in gate.sensitivity]
    return chosen, details


def _choose_fp16(bench: Workbench) -> tuple[dict[str, Path], dict[str, Any]]:
    converted = [g for g in bench.graphs if FOLLOWS.get(g, g) in bench.unit_graphs]
    chosen = {g: bench.scratch / f"{g}.fp16.onnx" if g in converted else bench.fp32[g] for g in bench.graphs}
    return chosen, {"kept_in_float": [], "kept_in_fp32": {g: convert_fp16(bench.fp32[g], chosen[g]) for g in converted}}


def _measure(bench: Workbench, chosen: dict[str, Path], splits: dict[str, Objects], fp32_scores: dict[str, dict], loader: RowLoader, options: QuantizeOptions) -> dict[str, Any]:
    """Accuracy against FP32 per split, output errors, sizes and side-by-side latency of ``chosen``."""
    threads, precision, graphs = options.threads, options.precision, bench.graphs
    final = bench.assemble(chosen, "final")
    accuracy = {}
    for split, objects in splits.items():
        scored = fp32_scores[split], segmentation_scores(final, objects.rows, loader, options.crop, threads)
        before, after = ({m: scores[m] for m in ("dsc", "nsd")} for scores in scored)
        drops = {f"{m}_drop": (before[m] or 0.0) - (after[m] or 0.0) for m in ("dsc", "nsd")}
        accuracy[split] = {"fp32": before, precision: after, **drops, "objects": len(objects.rows)}
    errors = {
        split: {g: output_error(bench.fp32_outputs(g, split, objects.feeds[g], threads), cpu_session(chosen[g], threads), MAIN_OUTPUT[g], objects.feeds[g]) for g in graphs}
        for split, objects in splits.items()
    }
    latency: dict[str, Any] = {"threads": threads, "device": "cpu"}
    for graph in (graphs[0], "decoder"):
        if graph in graphs:
            timing = side_by_side_latency({"fp32": bench.fp32[graph], precision: chosen[graph]}, splits["test"].feeds[graph][0], threads, options.latency_runs)
            latency[graph] = {**timing, "speedup_p50": timing["fp32"]["p50_ms"] / timing[precision]["p50_ms"]}
    return {
        "accuracy": accuracy,
        "output_rel_error": errors,
        "size_bytes": {g: {"fp32": bench.fp32[g].stat().st_size, precision: chosen[g].stat().st_size} for g in graphs},
        "latency": latency,
    }


def _write_graphs(chosen: dict[str, Path], layout: dict[str, Any], out: Path) -> list[str]:
    """``chosen`` graphs into ``out`` under the export's file names, each with the layout's metadata
    (quantizers rebuild the model proto; the spec and prompt format must travel in every file)."""
    if any(path.with_name(f"{path.name}.data").is_file() for path in chosen.values()):
        raise MedkdError("graphs over 2 GiB (external data) cannot be written by medkd quantize yet")
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # the directory is incomplete until the new manifest
    files = []
    for graph, path in chosen.items():
        name = layout["graphs"][graph]["file"]
        stamp_metadata(path, graph_metadata(layout), out / name)
        files.append(name)
    return files


def _write_cpu_graphs(out: Path, layout: dict[str, Any], graphs: list[str], enabled: bool) -> dict[str, str]:
    """Each quantized graph of ``graphs`` (written in ``out``) lowered for ONNX Runtime's CPU kernels
    beside it (``enabled``; else no such file is left from an earlier run): graph -> file name."""
    written = {}
    for graph in graphs:
        name = layout["graphs"][graph]["file"]
        lowered = out / cpu_file_name(name)
        if enabled and is_quantized(read_onnx(out / name)):
            write_cpu_graph(out / name, lowered)
            written[graph] = lowered.name
        else:
            lowered.unlink(missing_ok=True)
    return written


def quantize_export(export_dir: Path, out: Path, data: Path, options: QuantizeOptions) -> Manifest:
    """Quantize the export ``export_dir`` into the artifact ``out`` (manifest last)."""
    options.check()
    layout = read_layout(export_dir)
    _check_inputs(export_dir, layout, options.graphs)
    spec = recorded_preprocessing(layout, str(export_dir))
    layout = {**layout, "preprocessing": spec.to_dict()}
    preprocessing = spec.with_crop(options.crop, source=str(export_dir))
    manifest = load_manifest(data)
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    calibration, splits = _calibration_and_measurement_objects(export_dir, layout, manifest, loader, options, preprocessing)
    # The FP32 masks go to the reference-mask cache: the gate's agreement with FP32 reads them from there.
    fp32_scores = {split: segmentation_scores(export_dir, objects.rows, loader, options.crop, options.threads, keep_masks=True) for split, objects in splits.items()}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".quantize-") as scratch:
        bench = Workbench(export_dir, layout, Path(scratch), options.recipe, calibration.feeds, options.graphs, options.ort_fusion)
        if options.precision == "fp16":
            chosen, details = _choose_fp16(bench)
        else:
            record = _sweep_record(bench, calibration, splits["val"], data, options)
            chosen, details = _choose_int8(bench, splits["val"], loader, options, fp32_scores["val"], record)
        report = {
            "precision": options.precision,
            "recipe": options.recipe.to_dict(),
            "calibration": {"objects": len(calibration.rows), "split": options.calib_split, "crop": preprocessing.crop},
            **_measure(bench, chosen, splits, fp32_scores, loader, options),
            **details,
        }
        files = _write_graphs(chosen, layout, out)
        if options.trt_cache and options.precision == "int8":
            report["tensorrt_calibration_caches"] = _write_trt_caches(bench, out, options.tensorrt)
            files += list(report["tensorrt_calibration_caches"])
    cpu_files = _write_cpu_graphs(out, layout, list(chosen), options.cpu_graphs and options.precision == "int8")
    files += list(cpu_files.values())
    graphs = {g: graph_entry(out / layout["graphs"][g]["file"], [layout["graphs"][g]["file"]]) for g in chosen}
    for graph, name in cpu_files.items():
        graphs[graph]["cpu_file"] = name
    result = Manifest(
        kind=EXPORT_KIND,
        config={"export": {**layout, "graphs": graphs, "precision": options.precision}, "quantization": options.to_dict()},
        inputs=[as_input(export_dir), ArtifactInput("data-manifest", str(data), sha256_file(data))],
        files=hash_files(out, files),
        metrics={"quantization": report},
    )
    return write_manifest(out, result)
