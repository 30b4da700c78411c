"""``medkd quantize``: INT8 (or FP16) graphs of an export, calibrated on medical images, gated on DSC."""

from __future__ import annotations

from pathlib import Path

import typer

from medkd.cli.output import stdout_console
from medkd.cli.vocabulary import data_option, hidden_alias, legacy_model_argument, model_option, one_of, out_option


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def quantize_command(
    model: str = model_option("Export artifact directory (medkd export onnx)."),
    out: Path = out_option("Artifact directory to write (an export layout with Q/DQ graphs)."),
    data: Path = data_option("Data manifest (medkd data index): calibration images (--calib-split), the DSC gate (val) and the report (test). [required]"),
    backend: str = typer.Option("ort", help="ort (ONNX Runtime quantize_static) or nncf (nncf.quantize, ONNX backend)."),
    samples: int = typer.Option(32, min=1, help="Calibration objects (datasets in turn, every image before any image twice)."),
    calib_split: str = typer.Option("train", help="Split the calibration objects come from."),
    method: str = typer.Option("minmax", help="Calibration: minmax (extremes over all images), mean-minmax (mean of each image's extremes), percentile or entropy."),
    percentile: float = typer.Option(99.999, help="Percentile of --method percentile."),
    op_types: str = typer.Option("MatMul,Gemm,Conv", help="Operators whose weights and inputs are quantized (MatMul, Gemm, Conv)."),
    attention_matmuls: bool = typer.Option(False, "--attention-matmuls", help="Also quantize products of two activations (q @ k, attn @ v)."),
    smooth_quant: float = typer.Option(None, help="SmoothQuant alpha (0-1); off when not given."),
    cpu_weight_bits: int = typer.Option(
        7, help="Weights of ONNX Runtime's CPU kernels, as the gate measures them: 7 (any x86 CPU) or 8 (CPUs with VNNI only; half the rounding error, refused elsewhere)."
    ),
    max_dsc_drop: float = typer.Option(None, help="Largest allowed validation DSC drop against FP32 (0.01 = 1 point); reverts sensitive blocks."),
    gate_samples: int = typer.Option(16, min=1, help="Validation objects of the DSC gate and the sensitivity sweep."),
    gate_confidence: float = typer.Option(
        0.9, help="The gate holds when the validation DSC drop is within --max-dsc-drop at this one-sided confidence (paired per object; 0.5: the mean alone)."
    ),
    test_samples: int = typer.Option(16, min=1, help="Test objects of the report."),
    crop: str = typer.Option(None, help="none or box: overrides the crop the export was trained with (default: its own; a different one warns)."),
    keep_float: list[str] = typer.Option(None, "--keep-float", help="Block or node name to keep in float (repeatable)."),
    graphs: str = typer.Option("", help="Graphs to quantize, e.g. encoder (default: all; decoder_trt follows decoder); the others stay FP32."),
    sensitivity: bool = typer.Option(False, "--sensitivity", help="Run the one-block-at-a-time sweep even if the gate holds."),
    ort_fusion: bool = typer.Option(True, "--ort-fusion/--no-ort-fusion", help="Leave in float what ONNX Runtime's CPU kernels cannot fuse (off: TensorRT-only targets)."),
    precision: str = typer.Option("int8", help="int8 (Q/DQ) or fp16 (LayerNorm, softmax and attention bias kept FP32)."),
    trt_cache: bool = typer.Option(True, "--trt-cache/--no-trt-cache", help="Write TensorRT calibration caches (GRAPH.calib)."),
    cpu_graphs: bool = typer.Option(True, "--cpu-graphs/--no-cpu-graphs", help="Also write each INT8 graph lowered for ONNX Runtime's CPU integer kernels (GRAPH.cpu.onnx)."),
    tensorrt: str = typer.Option("10.3", "--tensorrt", help="TensorRT version in the calibration cache header."),
    threads: int = typer.Option(2, min=1, help="ONNX Runtime threads for evaluation and latency."),
    latency_runs: int = typer.Option(20, min=1, help="Timed runs per graph (interleaved FP32 / quantized)."),
    export_dir: str = legacy_model_argument(),
    calib: Path = hidden_alias("--calib"),
) -> None:
    """Post-training quantization of an export: symmetric int8 Q/DQ ONNX, calibrated on medical images."""
    from medkd.quantize.options import QuantizeOptions
    from medkd.quantize.recipe import Recipe
    from medkd.quantize.report import float_table, summary_table
    from medkd.quantize.stage import quantize_export

    model = one_of("--model", model, export_dir, "a positional EXPORT_DIR")
    data = one_of("--data", data, calib, "--calib")
    recipe = Recipe(backend, method, percentile, _list(op_types), attention_matmuls, smooth_quant, cpu_weight_bits)
    options = QuantizeOptions(
        recipe=recipe,
        samples=samples,
        calib_split=calib_split,
        crop=crop,
        max_dsc_drop=max_dsc_drop,
        gate_samples=gate_samples,
        gate_confidence=gate_confidence,
        test_samples=test_samples,
        keep_float=tuple(keep_float or ()),
        graphs=_list(graphs),
        ort_fusion=ort_fusion,
        precision=precision,
        sweep=sensitivity,
        trt_cache=trt_cache,
        cpu_graphs=cpu_graphs,
        tensorrt=tensorrt,
        threads=threads,
        latency_runs=latency_runs,
    )
    manifest = quantize_export(Path(model), out, data, options)
    report = manifest.metrics["quantization"]
    console = stdout_console()
    console.print(summary_table(report))
    kept = float_table(report)
    if kept is not None:
        console.print(kept)
    typer.echo(f"wrote {out}: {', '.join(manifest.files)}")
