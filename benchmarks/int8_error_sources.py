"""Where a block's INT8 error comes from: its calibration ranges, the CPU's 7-bit weights, the CPU
kernels, or the network amplifying what it is given.

    python benchmarks/int8_error_sources.py --export runs/litemedsam-zero-shot/export --data runs/data.jsonl

For each block named (default: the encoder's stem and first stage, one block of each later stage) and
each calibration method, the block alone is quantized by ``medkd quantize``'s recipe (the rest FP32)
and the relative error of the encoder's embedding on validation images is measured three ways (four
on a CPU with VNNI):

- ``qdq``: the Q/DQ graph computed in float by ONNX Runtime with every optimization off: the error
  of int8 rounding alone, as TensorRT would compute it;
- ``qdq_7bit``: the same with each weight re-quantized to 7 bits, as the CPU lowering does
  (:func:`medkd.runtime.cpu_lowering.seven_bit_weights`);
- ``lowered``: the graph as medkd's runtime runs it (integer kernels);
- ``lowered_8bit``: the same with its 8-bit weights kept (``medkd quantize --cpu-weight-bits 8``),
  where the CPU has VNNI.

Each quantized activation's own rounding error (its scale against its FP32 values on the same images)
is listed, and the network's amplification is measured apart from quantization: Gaussian noise of a
given size relative to the RMS of a block's output, added in the FP32 graph, and the embedding's
relative error that results. Where the FP32 encoder's time goes is measured too (ONNX Runtime's
profiler, kernel time by stage), so a block's error can be weighed against what quantizing it can
save. Tables on screen; JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.quantize.calibration import image_feeds  # noqa: E402
from medkd.quantize.recipe import CALIBRATION_METHODS, Recipe  # noqa: E402
from medkd.quantize.workbench import Workbench  # noqa: E402
from medkd.runtime.cpu_lowering import WEIGHT_BITS_KEY, has_vnni, seven_bit_weights  # noqa: E402
from medkd.runtime.layout import read_layout, stamp_metadata  # noqa: E402
from medkd.runtime.onnx_runtime import cpu_options, cpu_session  # noqa: E402

from medkd.artifacts import atomic_write_json, software_versions  # noqa: E402
from medkd.bench.device import device_info, device_slug  # noqa: E402
from medkd.bench.onnx_profile import kernel_times  # noqa: E402
from medkd.zoo import recorded_preprocessing  # noqa: E402

OUTPUT = "image_embeddings"
DEFAULT_BLOCKS = (
    "/encoder/patch_embed/seq/seq.2",
    "/encoder/layers.0/blocks.0",
    "/encoder/layers.0/blocks.1",
    "/encoder/layers.0",
    "/encoder/layers.1",
    "/encoder/layers.2/blocks.0",
    "/encoder/layers.3/blocks.1",
)
# Block outputs where noise is added: the end of the first MBConv block, of stage 0, of stage 2.
DEFAULT_NOISE_AT = (
    "/encoder/layers.0/blocks.0/act3/Mul_1_output_0",
    "/encoder/layers.0/downsample/Transpose_output_0",
    "/encoder/layers.2/blocks.5/Add_1_output_0",
)


def relative_error(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    """Mean over images of ||got - expected|| / ||expected||."""
    return float(np.mean([np.linalg.norm(g - e) / max(float(np.linalg.norm(e)), 1e-12) for g, e in zip(got, expected, strict=True)]))


def session(model: onnx.ModelProto | Path, optimized: bool) -> ort.InferenceSession:
    """A CPU session on ``model`` as it stands (no lowering); ``optimized`` False computes Q/DQ in float."""
    options = cpu_options(2)
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def outputs(runner: ort.InferenceSession, feeds: list[dict], names: list[str]) -> list[list[np.ndarray]]:
    return [runner.run(names, feed) for feed in feeds]


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """``model`` answering ``names`` (any intermediate tensors) instead of its outputs."""
    del model.graph.output[:]
    model.graph.output.extend(helper.make_value_info(name, onnx.TypeProto()) for name in names)
    return model


def activation_rounding(variant: onnx.ModelProto, fp32: Path, feeds: list[dict]) -> list[dict[str, Any]]:
    """Each quantized activation of ``variant``: its scale, its FP32 values' largest magnitude on
    ``feeds`` and the relative error of rounding them to that scale."""
    constants = {t.name: numpy_helper.to_array(t) for t in variant.graph.initializer}
    quantized = [(n.input[0], float(constants[n.input[1]])) for n in variant.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in constants]
    if not quantized:
        return []
    values = outputs(session(with_outputs(onnx.load(str(fp32)), [name for name, _ in quantized]), True), feeds, [name for name, _ in quantized])
    rows = []
    for index, (name, scale) in enumerate(quantized):
        x = np.concatenate([v[index].ravel() for v in values])
        rounded = np.clip(np.round(x / scale), -128, 127) * scale
        rows.append({"tensor": name, "scale": scale, "calibrated_amax": 127 * scale, "amax_here": float(np.abs(x).max()), "rounding_rel_error": float(np.linalg.norm(rounded - x) / np.linalg.norm(x))})
    return rows


def block_errors(bench: Workbench, block: str, feeds: list[dict], reference: list[np.ndarray]) -> dict[str, Any]:
    """The embedding's relative error with only ``block`` quantized, three ways (four on a VNNI CPU), and its activations' rounding."""
    path = bench.quantize("encoder", {b for b in bench.blocks("encoder") if b != block})
    variant = onnx.load(str(path))
    seven_bit = onnx.load(str(path))
    seven_bit_weights(seven_bit)
    errors = {
        "qdq": relative_error([o[0] for o in outputs(session(variant, False), feeds, [OUTPUT])], reference),
        "qdq_7bit": relative_error([o[0] for o in outputs(session(seven_bit, False), feeds, [OUTPUT])], reference),
        "lowered": relative_error([o[0] for o in outputs(cpu_session(path, 2), feeds, [OUTPUT])], reference),
    }
    if has_vnni():  # 8-bit weights, as ``medkd quantize --cpu-weight-bits 8`` lowers them for VNNI CPUs
        marked = path.with_name(f"{path.stem}-8bit.onnx")
        stamp_metadata(path, {WEIGHT_BITS_KEY: "8"}, marked)
        errors["lowered_8bit"] = relative_error([o[0] for o in outputs(cpu_session(marked, 2), feeds, [OUTPUT])], reference)
    return {"block": block, "nodes": len(bench.blocks("encoder")[block]), **errors, "activations": activation_rounding(variant, bench.fp32["encoder"], feeds)}


def noise_amplification(fp32: Path, at: str, sizes: list[float], feeds: list[dict], reference: list[np.ndarray], seed: int = 0) -> list[dict[str, Any]]:
    """Embedding error after Gaussian noise of each relative size (to the RMS of ``at``) added at ``at``."""
    model = onnx.load(str(fp32))
    noisy = f"{at}/noisy"
    for node in model.graph.node:
        node.input[:] = [noisy if name == at else name for name in node.input]
    model.graph.node.append(helper.make_node("Add", [at, "noise"], [noisy], name=f"{at}/add_noise"))
    model.graph.input.append(helper.make_tensor_value_info("noise", onnx.TensorProto.FLOAT, None))
    runner = session(with_outputs(model, [at, OUTPUT]), True)
    clean = outputs(session(with_outputs(onnx.load(str(fp32)), [at]), True), feeds, [at])
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        got = []
        for feed, (value,) in zip(feeds, clean, strict=True):
            noise = (size * float(np.sqrt(np.mean(value**2))) * rng.standard_normal(value.shape)).astype(np.float32)
            got.append(runner.run([OUTPUT], {**feed, "noise": noise})[0])
        rows.append({"at": at, "noise_rel": size, "embedding_rel_error": relative_error(got, reference)})
    return rows


def stage_of(node: str) -> str:
    """The stage a node of a TinyViT-style encoder belongs to: ``/encoder/layers.N``, the stem or the neck."""
    found = re.match(r"/encoder/(layers\.\d+|patch_embed|neck)", node)
    return found.group(0) if found else "other (layout reorders, unnamed nodes)"


def time_shares(path: Path, feed: dict, runs: int = 4) -> dict[str, float]:
    """Share of ONNX Runtime's kernel time in each stage of the graph at ``path``."""
    spent = kernel_times(path, feed, lambda node, _: stage_of(node), runs)
    total = sum(spent.values())
    return {stage: spent[stage] / total for stage in sorted(spent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="An FP32 export (medkd export onnx) with a TinyViT-style encoder.")
    parser.add_argument("--data", type=Path, required=True, help="Data manifest (medkd data).")
    parser.add_argument("--methods", default="minmax,mean-minmax", help=f"Calibration methods, comma-separated ({', '.join(CALIBRATION_METHODS)}).")
    parser.add_argument("--blocks", default=",".join(DEFAULT_BLOCKS))
    parser.add_argument("--noise-at", default=",".join(DEFAULT_NOISE_AT))
    parser.add_argument("--noise", default="0.01,0.03,0.1")
    parser.add_argument("--calibration", type=int, default=32, help="Train objects to calibrate on (medkd quantize's default).")
    parser.add_argument("--images", type=int, default=6, help="Validation objects the errors are measured on.")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    console = Console()
    layout = read_layout(args.export)
    layout = {**layout, "preprocessing": recorded_preprocessing(layout, str(args.export)).to_dict()}
    encoder_path = args.export / layout["graphs"]["encoder"]["file"]
    encoder = cpu_session(encoder_path, 2)
    feeds_by_split = image_feeds(args.export, args.data, {"train": args.calibration, "val": args.images})
    calibration, feeds = feeds_by_split["train"], feeds_by_split["val"]
    reference = [o[0] for o in outputs(encoder, feeds, [OUTPUT])]
    blocks = args.blocks.split(",")
    results: dict[str, Any] = {"blocks": {}, "noise": []}
    for method in args.methods.split(","):
        with tempfile.TemporaryDirectory(prefix="medkd-int8-sources-") as scratch:
            bench = Workbench(args.export, layout, Path(scratch), Recipe(method=method), {"encoder": calibration}, ("encoder",))
            unknown = [b for b in blocks if b not in bench.blocks("encoder")]
            if unknown:
                parser.error(f"no such encoder block: {', '.join(unknown)}")
            results["blocks"][method] = []
            for block in blocks:
                results["blocks"][method].append(block_errors(bench, block, feeds, reference))
                console.log(f"{method} {block}: {results['blocks'][method][-1]['lowered']:.3f}")
    results["fp32_time_shares"] = time_shares(encoder_path, feeds[0])
    for at in args.noise_at.split(","):
        results["noise"] += noise_amplification(encoder_path, at, [float(s) for s in args.noise.split(",")], feeds, reference)

    table = Table(title="Embedding relative error with one block quantized")
    table.add_column("block")
    hows = ("qdq", "qdq_7bit", "lowered", "lowered_8bit") if has_vnni() else ("qdq", "qdq_7bit", "lowered")
    for method in results["blocks"]:
        for how in hows:
            table.add_column(f"{method} {how}", justify="right")
    for index, block in enumerate(blocks):
        table.add_row(block, *(f"{rows[index][how]:.3f}" for rows in results["blocks"].values() for how in hows))
    console.print(table)
    noise = Table(title="Embedding relative error after Gaussian noise in the FP32 graph")
    for column in ("added at", "noise (rel. to RMS)", "embedding error", "amplification"):
        noise.add_column(column)
    for row in results["noise"]:
        noise.add_row(row["at"], f"{row['noise_rel']:.2f}", f"{row['embedding_rel_error']:.3f}", f"{row['embedding_rel_error'] / row['noise_rel']:.1f}x")
    console.print(noise)
    console.print("FP32 encoder time by stage: " + ", ".join(f"{stage} {share:.1%}" for stage, share in results["fp32_time_shares"].items()))

    device = device_info()
    out = args.out or ROOT / "benchmarks" / "results" / f"int8-error-sources-{dt.date.today().isoformat()}-{device_slug(device)}.json"
    atomic_write_json(
        out,
        {
            "kind": "medkd.int8-error-sources",
            "export": layout["model"],
            "calibration_objects": len(calibration),
            "measured_on": {"split": "val", "objects": len(feeds)},
            "device": device,
            "software": software_versions(),
            **results,
        },
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
