"""The INT8 encoder as shipped, run as a vendor runs it: plain ONNX Runtime against medkd's runtime on
the same machine, and how much of the CPU's integer peak the encoder reaches.

    python benchmarks/shipped_int8.py --pair runs/reference-cpu/teacher-deploy/export runs/reference-cpu/teacher-deploy/int8

For each ``--pair EXPORT INT8`` (an FP32 export and its ``medkd quantize`` artifact) the encoder runs in
five sessions, in turns of ``--block`` runs (each turn after one untimed run, so that the spinning idle
threads of a default-options session do not slow the next), one image of random values (no
data-dependent work in these graphs), p50 of ``--runs`` each after ``--warmup``; a U-Net is timed whole:

- plain ONNX Runtime (``onnxruntime.InferenceSession(path)``, default options) on the FP32 graph, on the
  INT8 Q/DQ graph (what bundles carried before CPU graphs) and on the CPU-lowered INT8 graph
  (``GRAPH.cpu.onnx``: the artifact's own, else written by :func:`write_cpu_graph`, as ``medkd pack`` does);
- medkd's runtime (``cpu_session``: ``--threads``, no spinning) on the FP32 graph and on the Q/DQ graph
  (lowered in memory at load time).

Efficiency: integer operations of the encoder (2 per multiply-accumulate of every Conv / MatMul / Gemm
with int8 weights, shapes from ONNX shape inference at batch 1) per second of the INT8 encoder's p50, over
the VNNI peak of ``--cores`` cores: ``cores x clock x MACs per cycle x 2``. The clock is /proc/cpuinfo's
``cpu MHz`` (``--ghz`` overrides it); MACs per cycle per core come from the flags: with ``avx512_vnni``
one VPDPBUSD on a 512-bit register is 64 u8 x s8 products (16 lanes x 4) and one issues per cycle
(Zen 4 splits it into two 256-bit halves on its two vector integer pipes; ``--vnni-per-cycle`` for cores
that issue two); with ``avx_vnni`` alone, two 256-bit ones (32 products each). The JSON goes to
``benchmarks/results/shipped-int8-DATE-DEVICE.json``; a table to stdout.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, software_versions  # noqa: E402
from medkd.bench import device_info  # noqa: E402
from medkd.bench.device import cpu_flags, cpuinfo_fields  # noqa: E402
from medkd.bench.suite import results_path  # noqa: E402
from medkd.bench.tables import markdown_table  # noqa: E402
from medkd.quantize.measure import interleaved_latency  # noqa: E402
from medkd.runtime.cpu_lowering import cpu_file_name, write_cpu_graph  # noqa: E402
from medkd.runtime.layout import read_layout  # noqa: E402
from medkd.runtime.onnx_runtime import cpu_session  # noqa: E402

RATIO_BAR = 0.10  # plain ONNX Runtime's INT8 speed-up within 10 % of medkd's runtime's
COMPUTE_OPS = ("Conv", "MatMul", "Gemm")


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Static shapes of every value of ``model`` at batch 1 (symbolic input dimensions set to 1)."""
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.dim_value:
                dim.dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    return shapes


def macs(path: Path) -> dict[str, int]:
    """Multiply-accumulates of a graph's Conv / MatMul / Gemm nodes at batch 1: ``int8`` those whose
    weight is a dequantized int8 constant, ``float`` the rest."""
    model = onnx.load(str(path))
    shapes = _shapes(model)
    weights = {t.name for t in model.graph.initializer}
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    counts = {"int8": 0, "float": 0}
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        out, a, w = shapes.get(node.output[0]), shapes.get(node.input[0]), shapes.get(node.input[1])
        if not out or not a or not w or 0 in out:
            raise ValueError(f"{path}: no static shape for {node.name} ({node.op_type})")
        reduced = math.prod(w[1:]) if node.op_type == "Conv" else a[-1]
        transposed = any(attr.name == "transA" and attr.i for attr in node.attribute)
        reduced = a[0] if node.op_type == "Gemm" and transposed else reduced
        counts["int8" if node.input[1] in dequantized else "float"] += math.prod(out) * reduced
    return counts


def _cpu_flags() -> tuple[set[str], float | None]:
    fields = cpuinfo_fields()
    mhz = fields.get("cpu mhz")
    return cpu_flags(fields), float(mhz) if mhz else None


def vnni_peak(cores: int, ghz: float | None, per_cycle: int | None) -> dict[str, Any]:
    """The CPU's int8 peak (ops per second) from its VNNI flags and clock; how it was computed."""
    flags, mhz = _cpu_flags()
    clock = ghz if ghz is not None else (mhz or 0.0) / 1000.0
    if "avx512_vnni" in flags:
        isa, products, issued = "avx512_vnni (VPDPBUSD zmm)", 64, per_cycle or 1
    elif "avx_vnni" in flags:
        isa, products, issued = "avx_vnni (VPDPBUSD ymm)", 32, per_cycle or 2
    else:
        return {"isa": None, "ops_per_s": None, "why": "no VNNI flag in /proc/cpuinfo"}
    per_core_cycle = products * issued
    return {
        "isa": isa,
        "cores": cores,
        "clock_ghz": clock,
        "clock_source": "--ghz" if ghz is not None else "/proc/cpuinfo cpu MHz",
        "macs_per_cycle_per_core": per_core_cycle,
        "ops_per_s": cores * clock * 1e9 * per_core_cycle * 2,
        "formula": f"{cores} cores x {clock:.3f} GHz x {products} u8*s8 products x {issued}/cycle x 2 ops",
    }


def _plain(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _timed_graph(directory: Path) -> dict[str, Any]:
    """The layout entry of the graph that takes the image: the encoder, or a U-Net whole."""
    graphs = read_layout(directory)["graphs"]
    return graphs["encoder"] if "encoder" in graphs else graphs["unet"]


def _cpu_graph(int8: Path, scratch: Path) -> tuple[Path, str]:
    """The CPU-lowered encoder (or U-Net) of an INT8 artifact: its own, else one written now."""
    entry = _timed_graph(int8)
    if entry.get("cpu_file") and (int8 / entry["cpu_file"]).is_file():
        return int8 / entry["cpu_file"], "the artifact's (medkd quantize)"
    target = scratch / cpu_file_name(entry["file"])
    write_cpu_graph(int8 / entry["file"], target)
    return target, "written here (as medkd pack does for an artifact without one)"


def measure_pair(export: Path, int8: Path, args: argparse.Namespace, peak: dict[str, Any], scratch: Path) -> dict[str, Any]:
    fp32 = export / _timed_graph(export)["file"]
    qdq = int8 / _timed_graph(int8)["file"]
    lowered, origin = _cpu_graph(int8, scratch)
    size = int(read_layout(export)["preprocessing"]["input_size"])
    plain_fp32 = _plain(fp32)
    channels = plain_fp32.get_inputs()[0].shape[1]  # 3, or 4 for a U-Net that takes the box as a channel
    feed = {"image": np.random.default_rng(0).standard_normal((1, channels, size, size)).astype(np.float32)}
    sessions = {
        "plain/fp32": plain_fp32,
        "plain/int8-qdq": _plain(qdq),
        "plain/int8-cpu": _plain(lowered),
        "medkd/fp32": cpu_session(fp32, args.threads),
        "medkd/int8": cpu_session(qdq, args.threads),
    }
    latency = interleaved_latency(sessions, feed, args.runs, args.warmup, args.block)
    p50 = {label: t["p50_ms"] for label, t in latency.items()}
    plain_speedup, medkd_speedup = p50["plain/fp32"] / p50["plain/int8-cpu"], p50["medkd/fp32"] / p50["medkd/int8"]
    counts = macs(qdq)
    int_ops = 2 * counts["int8"]
    achieved = {label: int_ops / (p50[label] / 1e3) for label in ("plain/int8-cpu", "medkd/int8")}
    return {
        "export": str(export),
        "int8": str(int8),
        "input_size": size,
        "cpu_graph": origin,
        "latency_ms": latency,
        "speedup_int8_over_fp32": {"plain_ort_qdq_file": p50["plain/fp32"] / p50["plain/int8-qdq"], "plain_ort_cpu_file": plain_speedup, "medkd_runtime": medkd_speedup},
        "plain_over_medkd_speedup": plain_speedup / medkd_speedup,
        "within_bar": abs(plain_speedup / medkd_speedup - 1.0) <= RATIO_BAR,
        "encoder_macs": counts,
        "int8_ops_per_s": achieved,
        "int8_efficiency": {label: (ops / peak["ops_per_s"] if peak.get("ops_per_s") else None) for label, ops in achieved.items()},
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for label, r in results.items():
        p50, speedup, efficiency = r["latency_ms"], r["speedup_int8_over_fp32"], r["int8_efficiency"]
        rows.append(
            [
                label,
                f"{p50['plain/fp32']['p50_ms']:.1f}",
                f"{p50['plain/int8-cpu']['p50_ms']:.1f}",
                f"{speedup['plain_ort_qdq_file']:.2f}x",
                f"{speedup['plain_ort_cpu_file']:.2f}x",
                f"{speedup['medkd_runtime']:.2f}x",
                f"{r['plain_over_medkd_speedup']:.2f}",
                f"{r['encoder_macs']['int8'] / 1e9:.2f}",
                "-" if efficiency["medkd/int8"] is None else f"{efficiency['plain/int8-cpu']:.1%} / {efficiency['medkd/int8']:.1%}",
            ]
        )
    headers = ["encoder", "plain FP32 ms", "plain INT8 ms", "plain Q/DQ file", "plain CPU file", "medkd runtime", "plain / medkd", "int8 GMAC", "VNNI peak (plain / medkd)"]
    return markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", nargs=2, action="append", metavar=("EXPORT", "INT8"), type=Path, required=True, help="FP32 export and its medkd quantize artifact (repeatable)")
    parser.add_argument("--label", action="append", default=[], help="name of each pair, in order (default: the export's parent folder)")
    parser.add_argument("--threads", type=int, default=2, help="medkd runtime threads (plain ONNX Runtime takes its default)")
    parser.add_argument("--cores", type=int, default=2, help="cores of the VNNI peak")
    parser.add_argument("--ghz", type=float, help="clock of the VNNI peak (default: /proc/cpuinfo's cpu MHz)")
    parser.add_argument("--vnni-per-cycle", type=int, help="VNNI instructions a core issues per cycle (default: by ISA, see above)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--block", type=int, default=5, help="timed runs of a session in a row (after an untimed one) before the next session's turn")
    parser.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/shipped-int8-DATE-DEVICE.json)")
    args = parser.parse_args()

    device = device_info()
    peak = vnni_peak(args.cores, args.ghz, args.vnni_per_cycle)
    labels = args.label + [export.resolve().parent.name for export, _ in args.pair[len(args.label) :]]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for label, (export, int8) in zip(labels, args.pair):
            results[label] = measure_pair(export, int8, args, peak, Path(scratch) / label)
    out = args.out or results_path(ROOT / "benchmarks" / "results", "shipped-int8", device)
    atomic_write_json(out, {"device": device, "software": software_versions(), "ort_version": ort.__version__, "vnni_peak": peak, "settings": vars(args), "results": results})
    print(table(results))
    print(f"VNNI peak: {peak.get('formula', peak.get('why'))} = {(peak['ops_per_s'] or 0) / 1e9:.0f} GOPS")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
