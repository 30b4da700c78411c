"""Which quantized nodes ONNX Runtime's CPU optimizer fuses into integer kernels, and which it cannot.

A Q/DQ unit that ONNX Runtime fuses (``MatMulIntegerToFloat``, ``QLinearConv``, ...) runs in int8; one it
cannot fuse runs as it is written: the weights dequantized on every run, then the float operator,
slower than the FP32 graph (SAM's small decoder matrices and ``Gemm`` heads are like that). The
optimizer's own output (level ``EXTENDED``, where the Q/DQ fusions live) on the graph as ``medkd``
hands it over (lowered: :mod:`medkd.runtime.cpu_lowering`) tells which is which: a node that keeps its
name and still reads a ``DequantizeLinear`` output was not fused.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort
from medkd.runtime.cpu_lowering import cpu_model


def unfused_nodes(path: Path, names: list[str]) -> list[str]:
    """Those of ``names`` that ONNX Runtime (CPU) leaves as dequantize + float operator."""
    with tempfile.TemporaryDirectory(prefix="medkd-fusion-") as scratch:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(cpu_model(path), options, providers=["CPUExecutionProvider"])
        model = onnx.load(options.optimized_model_filepath, load_external_data=False)
    producers = {output: node.op_type for node in model.graph.node for output in node.output}
    wanted = set(names)
    return [
        node.name
        for node in model.graph.node
        if node.name in wanted and any(producers.get(value) == "DequantizeLinear" for value in node.input)
    ]
