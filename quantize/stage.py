"""``medkd quantize``: an export artifact in, an export-layout artifact of symmetric int8 Q/DQ graphs out.

1. Calibration feeds from train-split objects of a data manifest (:mod:`medkd.quantize.calibration`);
   validation and test objects for the DSC gate and the report.
2. Every quantizable node quantized by the recipe; with ``max_dsc_drop`` the validation DSC of the
   whole pipeline is compared with FP32 and, while it drops more, the most sensitive block (from a
   one-block-at-a-time sweep) goes back to float.
3. The output keeps the export layout (``medkd eval``, ``medkd segment`` and ``medkd export tensorrt``
   take it unchanged) and adds ``config.quantization`` and ``metrics.quantization``: output errors,
   DSC / NSD against FP32 on val and test, sizes, ONNX Runtime latency FP32 vs INT8, the blocks kept in
   float and why. TensorRT calibration caches (``GRAPH.calib``) come from the same statistics.

``precision="fp16"`` writes FP16 graphs instead (:mod:`medkd.quantize.fp16`), measured the same way.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from medkd.artifacts import MANIFEST_NAME, ArtifactInput, Manifest, as_input, hash_files, sha256_file, write_manifest
from medkd.data import ArrayCache, RowLoader, default_cache_dir, load_manifest
from medkd.data.geometry import CROP_MODES
from medkd.errors import BadInput, MedkdError
from medkd.export.layout import EXPORT_KIND, graph_entry, read_layout
from medkd.export.runtime import cpu_session
from medkd.quantize.calibration import Feed, amax, graph_feeds, model_inputs, spread_rows, unet_feeds
from medkd.quantize.fp16 import convert_fp16
from medkd.quantize.measure import MAIN_OUTPUT, output_error, segmentation_scores, side_by_side_latency
from medkd.quantize.recipe import Recipe
from medkd.quantize.sensitivity import BlockSensitivity, sweep
from medkd.quantize.symmetry import QDQ_OPS, require_symmetric
from medkd.quantize.trt_cache import write_calibration_cache
from medkd.quantize.workbench import FOLLOWS, Workbench, graph_names

PRECISIONS = ("int8", "fp16")
FLOAT_OP_TYPES = ("LayerNormalization", "Softmax", "Erf", "Gelu", "ReduceMean", "Pow", "Sqrt", "Div", "Add", "Mul")
TRT_CACHE_GRAPHS = ("encoder", "decoder_trt", "unet")


@dataclass
class QuantizeOptions:
    """What ``medkd quantize`` was asked for."""

    recipe: Recipe = field(default_factory=Recipe)
    samples: int = 32
    calib_split: str = "train"
    crop: str = "none"
    max_dsc_drop: float | None = None
    gate_samples: int = 16
    test_samples: int = 16
    keep_float: tuple[str, ...] = ()
    precision: str = "int8"
    sweep: bool = False
    trt_cache: bool = True
    tensorrt: str = "10.3"
    threads: int = 2
    latency_runs: int = 20
    progress: bool = True

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise BadInput(f"--precision must be one of {', '.join(PRECISIONS)}, not '{self.precision}'")
        if self.crop not in CROP_MODES:
            raise BadInput(f"--crop must be one of {', '.join(CROP_MODES)}, not '{self.crop}'")
        if self.max_dsc_drop is not None and not 0.0 <= self.max_dsc_drop < 1.0:
            raise BadInput(f"--max-dsc-drop is a DSC fraction between 0 and 1 (0.01 = 1 point), not {self.max_dsc_drop}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "recipe": self.recipe.to_dict()}


@dataclass
class Objects:
    """Model inputs, box prompts and graph feeds of the calibration, validation or test objects."""

    rows: list
    feeds: dict[str, list[Feed]]


def _check_inputs(export_dir: Path, layout: dict[str, Any]) -> None:
    for graph in graph_names(layout):
        path = export_dir / layout["graphs"][graph]["file"]
        require_symmetric(path)
        model = onnx.load(str(path), load_external_data=False)
        if any(node.op_type in QDQ_OPS for node in model.graph.node):
            raise BadInput(f"{path} is already quantized (it has Q/DQ nodes); quantize the FP32 export")


def _objects(manifest, split: str, count: int, layout: dict[str, Any], loader: RowLoader, encoder, crop: str, progress: bool) -> Objects:
    rows = spread_rows(manifest, count, split)
    if not rows:
        raise BadInput(f"the data manifest has no objects in split '{split}'")
    size = int(layout["preprocessing"]["input_size"])
    images, prompts = model_inputs(rows, loader, size, crop)  # type: ignore[arg-type]
    if layout["model"]["family"] == "unet":
        return Objects(rows, {"unet": unet_feeds(images, prompts, size)})
    return Objects(rows, graph_feeds(encoder, images, prompts, int(layout["prompts"]["point_slots"]), progress))


def _float_by_recipe(path: Path) -> dict[str, int]:
    model = onnx.load(str(path), load_external_data=False)
    return {op: n for op in FLOAT_OP_TYPES if (n := sum(node.op_type == op for node in model.graph.node))}


def _size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


class Gate:
    """Reverts the most sensitive blocks to float until the validation DSC drop is within bounds."""

    def __init__(self, bench: Workbench, val: Objects, loader: RowLoader, options: QuantizeOptions, fp32_val_dsc: float) -> None:
        self.bench, self.val, self.loader, self.options = bench, val, loader, options
        self.fp32_dsc = fp32_val_dsc
        self.history: list[dict[str, Any]] = []
        self.sensitivity: list[BlockSensitivity] | None = None

    def dsc(self, kept: dict[str, set[str]], name: str) -> float:
        chosen = {g: self.bench.quantize(g, kept[g]) for g in self.bench.unit_graphs}
        score = segmentation_scores(self.bench.assemble(chosen, name), self.val.rows, self.loader, self.options.crop, self.options.threads)["dsc"]  # type: ignore[arg-type]
        return float(score or 0.0)

    def measure_block(self, graph: str, block: str) -> tuple[float, float]:
        others = {b for b in self.bench.blocks(graph) if b != block}
        path = self.bench.quantize(graph, others)
        directory = self.bench.assemble({graph: path}, "sweep")
        dsc = segmentation_scores(directory, self.val.rows, self.loader, self.options.crop, self.options.threads)["dsc"] or 0.0  # type: ignore[arg-type]
        error = output_error(cpu_session(self.bench.fp32[graph]), cpu_session(path), MAIN_OUTPUT[graph], self.val.feeds[graph])
        return self.fp32_dsc - float(dsc), error

    def run_sweep(self) -> list[BlockSensitivity]:
        if self.sensitivity is None:
            self.sensitivity = sweep({g: self.bench.blocks(g) for g in self.bench.unit_graphs}, self.measure_block, self.options.progress)
        return self.sensitivity

    def hold(self, kept: dict[str, set[str]]) -> dict[str, set[str]]:
        """``kept`` grown until the gate holds (``MedkdError`` when even all-float blocks miss it)."""
        limit = self.options.max_dsc_drop
        while True:
            dsc = self.dsc(kept, f"gate-{len(self.history)}")
            self.history.append({"kept_in_float": sorted(b for g in kept for b in kept[g]), "val_dsc": dsc, "dsc_drop": self.fp32_dsc - dsc})
            if limit is None or self.fp32_dsc - dsc <= limit:
                return kept
            remaining = [s for s in self.run_sweep() if s.block not in kept[s.graph]]
            if not remaining:
                raise MedkdError(f"validation DSC drops {self.fp32_dsc - dsc:.4f} > {limit} even with every block in float")
            kept[remaining[0].graph].add(remaining[0].block)


def _kept_report(kept: dict[str, set[str]], forced: set[str], sensitivity: list[BlockSensitivity] | None) -> list[dict[str, Any]]:
    measured = {(s.graph, s.block): s for s in sensitivity or []}
    report = []
    for graph, blocks in kept.items():
        for block in sorted(blocks):
            entry: dict[str, Any] = {"graph": graph, "block": block}
            if block in forced:
                entry["reason"] = "kept in float by request (--keep-float)"
            else:
                s = measured[(graph, block)]
                entry.update({"reason": "DSC gate: most sensitive remaining block", "dsc_drop_alone": s.dsc_drop, "output_error_alone": s.output_error})
            report.append(entry)
    return report


def _write_trt_caches(bench: Workbench, out: Path, version: str) -> dict[str, int]:
    written = {}
    for graph in bench.graphs:
        if graph in TRT_CACHE_GRAPHS:
            written[f"{graph}.calib"] = len(write_calibration_cache(out / f"{graph}.calib", amax(bench.ranges(graph)), version))
    return written


def quantize_export(export_dir: Path, out: Path, data: Path, options: QuantizeOptions) -> Manifest:
    """Quantize the export ``export_dir`` into the artifact ``out`` (manifest last)."""
    options.check()
    layout = read_layout(export_dir)
    _check_inputs(export_dir, layout)
    manifest = load_manifest(data)
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    graphs = graph_names(layout)
    encoder = None if layout["model"]["family"] == "unet" else cpu_session(export_dir / layout["graphs"]["encoder"]["file"], options.threads)
    progress = options.progress
    calibration = _objects(manifest, options.calib_split, options.samples, layout, loader, encoder, options.crop, progress)
    val = _objects(manifest, "val", options.gate_samples, layout, loader, encoder, options.crop, False)
    test = _objects(manifest, "test", options.test_samples, layout, loader, encoder, options.crop, False)
    threads = options.threads
    fp32_scores = {split: segmentation_scores(export_dir, objs.rows, loader, options.crop, threads) for split, objs in (("val", val), ("test", test))}  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".quantize-") as scratch_name:
        scratch = Path(scratch_name)
        bench = Workbench(export_dir, layout, scratch, options.recipe, calibration.feeds)
        extra: dict[str, Any] = {}
        if options.precision == "fp16":
            chosen, kept_in_float = {}, []
            for graph in graphs:
                chosen[graph] = scratch / f"{graph}.fp16.onnx"
                extra.setdefault("kept_in_fp32", {})[graph] = convert_fp16(bench.fp32[graph], chosen[graph])
        else:
            forced = set(options.keep_float)
            kept = {g: set(forced) for g in bench.unit_graphs}
            gate = Gate(bench, val, loader, options, float(fp32_scores["val"]["dsc"] or 0.0))
            if options.sweep:
                gate.run_sweep()
            kept = gate.hold(kept)
            chosen = {g: bench.quantize(g, kept[FOLLOWS.get(g, g)]) for g in graphs}
            kept_in_float = _kept_report(kept, forced, gate.sensitivity)
            extra["gate"] = {"max_dsc_drop": options.max_dsc_drop, "fp32_val_dsc": gate.fp32_dsc, "steps": gate.history}
            if gate.sensitivity is not None:
                extra["sensitivity"] = [s.to_dict() for s in gate.sensitivity]
            extra["quantized_nodes"] = {g: {"quantized": len(bench.nodes(g, kept[FOLLOWS.get(g, g)])), "candidates": len(bench.candidates[g])} for g in graphs}
            extra["float_by_recipe"] = {g: _float_by_recipe(bench.fp32[g]) for g in graphs}
        final = bench.assemble(chosen, "final")
        scores = {split: segmentation_scores(final, objs.rows, loader, options.crop, threads) for split, objs in (("val", val), ("test", test))}  # type: ignore[arg-type]
        errors = {split: {g: output_error(cpu_session(bench.fp32[g]), cpu_session(chosen[g]), MAIN_OUTPUT[g], objs.feeds[g]) for g in graphs} for split, objs in (("val", val), ("test", test))}
        first = graphs[0]
        latency = {
            g: side_by_side_latency({"fp32": bench.fp32[g], options.precision: chosen[g]}, test.feeds[g][0], threads, options.latency_runs)
            for g in (first, "decoder") if g in graphs
        }
        for timing in latency.values():
            timing["speedup_p50"] = timing["fp32"]["p50_ms"] / timing[options.precision]["p50_ms"]  # type: ignore[assignment]
        report = {
            "precision": options.precision,
            "recipe": options.recipe.to_dict(),
            "calibration": {"objects": len(calibration.rows), "split": options.calib_split, "crop": options.crop},
            "accuracy": {
                split: {"fp32": fp32_scores[split], options.precision: scores[split], "dsc_drop": (fp32_scores[split]["dsc"] or 0.0) - (scores[split]["dsc"] or 0.0), "nsd_drop": (fp32_scores[split]["nsd"] or 0.0) - (scores[split]["nsd"] or 0.0), "objects": len(objs.rows)}
                for split, objs in (("val", val), ("test", test))
            },
            "output_rel_error": errors,
            "size_bytes": {g: {"fp32": _size([bench.fp32[g]]), options.precision: _size([chosen[g]])} for g in graphs},
            "latency": {"threads": threads, "device": "cpu", **latency},
            "kept_in_float": kept_in_float,
            **extra,
        }
        if any(chosen[g].with_name(f"{chosen[g].name}.data").is_file() for g in graphs):
            raise MedkdError("graphs over 2 GiB (external data) cannot be written by medkd quantize yet")
        (out / MANIFEST_NAME).unlink(missing_ok=True)  # the directory is incomplete until the new manifest
        files = []
        for graph in graphs:
            name = layout["graphs"][graph]["file"]
            shutil.copy2(chosen[graph], out / name)
            files.append(name)
        if options.trt_cache and options.precision == "int8":
            report["tensorrt_calibration_caches"] = _write_trt_caches(bench, out, options.tensorrt)
            files += list(report["tensorrt_calibration_caches"])
    new_layout = {**layout, "graphs": {g: graph_entry(out / layout["graphs"][g]["file"], [layout["graphs"][g]["file"]]) for g in graphs}, "precision": options.precision}
    inputs = [as_input(export_dir), ArtifactInput("data-manifest", str(data), sha256_file(data))]
    result = Manifest(
        kind=EXPORT_KIND,
        config={"export": new_layout, "quantization": options.to_dict()},
        inputs=inputs,
        files=hash_files(out, files),
        metrics={"quantization": report},
    )
    return write_manifest(out, result)
