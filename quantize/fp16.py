"""FP16 graphs for GPU targets, with what overflows or loses precision in FP16 kept in FP32.

``onnxruntime.transformers.float16.convert_float_to_float16`` converts the graph with its inputs and
outputs kept FP32 (callers feed the same tensors). Blocked, so kept FP32 with casts around them
(pitfall 1): LayerNormalization, Softmax and the reductions / powers of hand-written norms
(TinyViT's ``LayerNorm2d`` in the neck), and the additions that build the softmax's input: TinyViT's
cached attention bias (pitfall 2: the bias stays FP32 with its sum) and SAM's relative positions.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

FP32_OP_TYPES = ("LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt")
LAYOUT_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten")


def softmax_producers(model: onnx.ModelProto) -> list[str]:
    """The ``Add`` nodes that build a Softmax input: attention logits plus TinyViT's cached bias or SAM's
    decomposed relative positions (``attn + rel_h + rel_w``), found through reshapes and transposes."""
    producers = {output: node for node in model.graph.node for output in node.output}
    frontier = [node.input[0] for node in model.graph.node if node.op_type == "Softmax"]
    found: dict[str, None] = {}
    while frontier:
        node = producers.get(frontier.pop())
        if node is None or node.name in found:
            continue
        if node.op_type == "Add":
            found[node.name] = None
            frontier.extend(node.input)
        elif node.op_type in LAYOUT_OPS:
            frontier.append(node.input[0])
    order = {node.name: index for index, node in enumerate(model.graph.node)}
    return sorted(found, key=order.__getitem__)


def convert_fp16(source: Path, target: Path) -> dict[str, object]:
    """Write the FP16 version of ``source`` to ``target``; returns what was kept in FP32."""
    model = onnx.load(str(source))
    kept_nodes = softmax_producers(model)
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP32_OP_TYPES), node_block_list=kept_nodes)
    onnx.save_model(converted, str(target))
    counts = {op: sum(node.op_type == op for node in model.graph.node) for op in FP32_OP_TYPES}
    return {"op_types": {op: n for op, n in counts.items() if n}, "attention_bias_adds": kept_nodes}
