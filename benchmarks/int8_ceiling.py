"""How much faster INT8 can make an encoder in ONNX Runtime on this CPU, whatever it costs in accuracy.

    python benchmarks/int8_ceiling.py --data runs/data.jsonl \
        --model teacher=runs/reference-cpu/teacher-deploy --model tinyvit-256=runs/reference-cpu/tinyvit-256

For each ``--model LABEL=FOLDER`` (a model folder of a run: its FP32 ``export/`` and, where there is
one, the gated ``int8/`` that ``medkd quantize`` shipped):

1. **Where FP32 time goes.** ONNX Runtime's profiler on the FP32 encoder (medkd's session options):
   the share of kernel time in operators that have integer kernels (``Conv``, ``MatMul``, ``Gemm`` and
   their fused forms) and in the rest (GELU, softmax, LayerNorm, transposes, resizes, element-wise),
   which INT8 leaves in float. Amdahl's bound: ``1 / rest`` if the integer kernels took no time at all.
2. **The encoder quantized whole.** ``medkd quantize``'s recipe with every ``Conv``, ``MatMul`` and
   ``Gemm`` quantized, attention products included, no block kept in float (the DSC gate off), 8-bit
   weights on a CPU with VNNI; lowered for the CPU kernels. Its embedding's relative error on
   validation images says what that costs; its profile gives the speed-up of the integer kernels over
   the FP32 ones they replace, and the bound with kernels that fast.
3. **Side by side.** FP32, the shipped INT8 and the whole INT8 encoder, interleaved rounds, batch 1,
   medians.

The ceiling is what no choice of calibration, gate or training can exceed with these kernels on this
CPU: it holds for any weights. Table on screen; JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, software_versions  # noqa: E402
from medkd.bench.device import device_info, device_slug  # noqa: E402
from medkd.bench.onnx_profile import kernel_times  # noqa: E402
from medkd.quantize.calibration import image_feeds  # noqa: E402
from medkd.quantize.measure import graph_outputs, interleaved_latency, output_error  # noqa: E402
from medkd.quantize.recipe import Recipe  # noqa: E402
from medkd.quantize.workbench import Workbench  # noqa: E402
from medkd.runtime.cpu_lowering import INTEGER_KERNELS, cpu_graph_file, has_vnni, write_cpu_graph  # noqa: E402
from medkd.runtime.layout import read_layout  # noqa: E402
from medkd.runtime.onnx_runtime import cpu_session  # noqa: E402
from medkd.zoo import recorded_preprocessing  # noqa: E402

OUTPUT = "image_embeddings"
# Float operators that have integer kernels (as ONNX Runtime names them once it has fused them).
FLOAT_PRODUCTS = ("Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm")


def split_time(times: dict[str, float], products: tuple[str, ...]) -> tuple[float, float]:
    """Milliseconds in the operators ``products`` and in all the others."""
    inside = sum(ms for op, ms in times.items() if op in products)
    return inside, sum(times.values()) - inside


def amdahl(rest_share: float, product_speedup: float) -> float:
    """Whole-graph speed-up when the products (``1 - rest_share`` of the time) run ``product_speedup`` times faster."""
    return 1.0 / (rest_share + (1.0 - rest_share) / product_speedup)


def whole_int8(export: Path, layout: dict[str, Any], feeds: list[dict[str, np.ndarray]], scratch: Path) -> Path:
    """The encoder of the export at ``export`` (its ``layout``) with every product quantized (no block in
    float), lowered for the CPU."""
    layout = {**layout, "preprocessing": recorded_preprocessing(layout, str(export)).to_dict()}
    recipe = Recipe(attention_matmuls=True, cpu_weight_bits=8 if has_vnni() else 7)
    bench = Workbench(export, layout, scratch, recipe, {"encoder": feeds}, ("encoder",))
    lowered = scratch / "encoder-whole-int8.cpu.onnx"
    write_cpu_graph(bench.quantize("encoder", set()), lowered)
    return lowered


def measure(label: str, folder: Path, data: Path, calibration: int, images: int, rounds: int, console: Console) -> dict[str, Any]:
    export = folder / "export"
    layout = read_layout(export)
    fp32 = export / layout["graphs"]["encoder"]["file"]
    feeds = image_feeds(export, data, {"train": calibration, "val": images})
    graphs = {"fp32": fp32}
    shipped = folder / "int8"
    if (shipped / "manifest.json").is_file():
        graphs["shipped int8"] = shipped / cpu_graph_file(shipped, read_layout(shipped)["graphs"]["encoder"])
    with tempfile.TemporaryDirectory(prefix="medkd-int8-ceiling-") as scratch:
        graphs["whole int8"] = whole_int8(export, layout, feeds["train"], Path(scratch))
        console.log(f"{label}: quantized whole")
        sessions = {name: cpu_session(path, 2) for name, path in graphs.items()}
        reference = graph_outputs(sessions["fp32"], OUTPUT, feeds["val"])
        errors = {name: output_error(reference, session, OUTPUT, feeds["val"]) for name, session in sessions.items() if name != "fp32"}
        feed = feeds["val"][0]
        fp32_ops, int8_ops = (kernel_times(path, feed, lambda _, op: op, runs=5) for path in (fp32, graphs["whole int8"]))
        latency = interleaved_latency(sessions, feed, runs=rounds, warmup=2)
    products_fp32, rest_fp32 = split_time(fp32_ops, FLOAT_PRODUCTS)
    products_int8, _ = split_time(int8_ops, (*INTEGER_KERNELS, *FLOAT_PRODUCTS))
    rest_share = rest_fp32 / (products_fp32 + rest_fp32)
    kernel_speedup = products_fp32 / products_int8
    p50 = {name: row["p50_ms"] for name, row in latency.items()}
    return {
        "label": label,
        "model": layout["model"]["name"],
        "fp32_ms_by_op": fp32_ops,
        "whole_int8_ms_by_op": int8_ops,
        "fp32_products_ms": products_fp32,
        "fp32_rest_ms": rest_fp32,
        "fp32_rest_share": rest_share,
        "int8_products_ms": products_int8,
        "integer_kernel_speedup": kernel_speedup,
        "bound_infinitely_fast_kernels": 1.0 / rest_share,
        "bound_measured_kernels": amdahl(rest_share, kernel_speedup),
        "latency": latency,
        "speedup_vs_fp32": {name: p50["fp32"] / ms for name, ms in p50.items() if name != "fp32"},
        "embedding_rel_error": errors,
        "val_images": len(feeds["val"]),
        "calibration_images": len(feeds["train"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="LABEL=FOLDER: a run's model folder (export/ and int8/).")
    parser.add_argument("--data", type=Path, required=True, help="Data manifest (medkd data index).")
    parser.add_argument("--calibration", type=int, default=16, help="Train objects to calibrate the whole-INT8 encoder on.")
    parser.add_argument("--images", type=int, default=4, help="Validation objects its embedding error is measured on.")
    parser.add_argument("--rounds", type=int, default=12, help="Interleaved timing rounds.")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.model)
    for label, folder in models.items():
        if not (Path(folder) / "export" / "manifest.json").is_file():
            parser.error(f"{label}: {folder} has no export/ (medkd export onnx)")
    console = Console()
    rows = [measure(label, Path(folder), args.data, args.calibration, args.images, args.rounds, console) for label, folder in models.items()]

    table = Table(title="INT8 encoder speed-up in ONNX Runtime on this CPU: measured and the ceiling")
    for column in ("model", "FP32 ms", "not in int8 kernels", "int8 kernels vs FP32", "bound: kernels free", "bound: kernels as measured", "whole INT8", "its embedding error", "shipped INT8"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        shipped = row["speedup_vs_fp32"].get("shipped int8")
        table.add_row(
            row["label"],
            f"{row['latency']['fp32']['p50_ms']:.1f}",
            f"{row['fp32_rest_share']:.0%}",
            f"{row['integer_kernel_speedup']:.2f}x",
            f"{row['bound_infinitely_fast_kernels']:.2f}x",
            f"{row['bound_measured_kernels']:.2f}x",
            f"{row['speedup_vs_fp32']['whole int8']:.2f}x",
            f"{row['embedding_rel_error']['whole int8']:.3f}",
            "-" if shipped is None else f"{shipped:.2f}x",
        )
    console.print(table)
    device = device_info()
    out = args.out or ROOT / "benchmarks" / "results" / f"int8-ceiling-{dt.date.today().isoformat()}-{device_slug(device)}.json"
    atomic_write_json(out, {"kind": "medkd.int8-ceiling", "device": device, "software": software_versions(), "rounds": args.rounds, "models": rows})
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
