"""FP16 graphs for GPU targets, with what overflows or loses precision in FP16 kept in FP32.

``onnxruntime.transformers.float16.convert_float_to_float16`` converts the graph with its inputs and
outputs kept FP32 (callers feed the same tensors). Blocked, so kept FP32 with casts around them
(pitfall 1): LayerNormalization, Softmax and the reductions / powers of hand-written norms
(TinyViT's ``LayerNorm2d`` in the neck), and the node that adds TinyViT's cached attention bias to
the attention logits right before the softmax (pitfall 2: the bias stays FP32 with its sum).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

FP32_OP_TYPES = ("LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt")


def softmax_producers(model: onnx.ModelProto) -> list[str]:
    """Nodes whose output is a Softmax input: attention logits plus relative-position / cached bias."""
    softmax_inputs = {node.input[0] for node in model.graph.node if node.op_type == "Softmax"}
    return [node.name for node in model.graph.node if node.op_type == "Add" and set(node.output) & softmax_inputs]


def convert_fp16(source: Path, target: Path) -> dict[str, object]:
    """Write the FP16 version of ``source`` to ``target``; returns what was kept in FP32."""
    model = onnx.load(str(source))
    kept_nodes = softmax_producers(model)
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP32_OP_TYPES), node_block_list=kept_nodes)
    onnx.save_model(converted, str(target))
    counts = {op: sum(node.op_type == op for node in model.graph.node) for op in FP32_OP_TYPES}
    return {"op_types": {op: n for op, n in counts.items() if n}, "attention_bias_adds": kept_nodes}
