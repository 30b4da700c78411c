"""The nodes a recipe quantizes, grouped into blocks (the units that stay in float or not).

A block is named after the module path the exporter gives a node: ``/encoder/layers.1/blocks.0``,
``/encoder/blocks.3``, ``/transformer/layers.0``, ``/output_hypernetworks_mlps.2``: the path up to its
first indexed module (and a ``blocks.N`` nested right below it); nodes without an indexed module
belong to the path's first two modules (``/encoder/patch_embed``), and unnamed ones to ``/``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import onnx
from medkd.quantize.recipe import QUANTIZABLE_OP_TYPES, Recipe

_INDEXED = re.compile(r".+\.\d+$")
_NESTED = re.compile(r"^blocks\.\d+$")
FLOAT_OP_TYPES = ("LayerNormalization", "Softmax", "Gelu", "Erf", "ReduceMean", "Sqrt")


def block_of(node_name: str) -> str:
    """The block a node belongs to, from its exported name."""
    modules = node_name.split("/")[1:-1]
    for index, module in enumerate(modules):
        if _INDEXED.match(module):
            end = index + 2 if index + 1 < len(modules) and _NESTED.match(modules[index + 1]) else index + 1
            return "/" + "/".join(modules[:end])
    return "/" + "/".join(modules[:2])


def _constants(model: onnx.ModelProto) -> set[str]:
    names = {t.name for t in model.graph.initializer}
    names.update(node.output[0] for node in model.graph.node if node.op_type == "Constant")
    return names


def _grouped(node: onnx.NodeProto) -> bool:
    return any(a.name == "group" and a.i > 1 for a in node.attribute)


def _activation_product(node: onnx.NodeProto, constants: set[str]) -> bool:
    """A ``MatMul`` of two activations (attention ``q @ k``, ``attn @ v``), not of an activation and a weight."""
    return node.op_type == "MatMul" and node.input[1] not in constants


def _why_float(node: onnx.NodeProto, constants: set[str], recipe: Recipe) -> str | None:
    """Why the recipe leaves a ``MatMul`` / ``Gemm`` / ``Conv`` in float (``None``: it quantizes it)."""
    if node.op_type not in recipe.op_types:
        return f"{node.op_type} not in the recipe's operator types"
    if _activation_product(node, constants) and not recipe.attention_matmuls:
        return "product of two activations (attention)"
    if node.op_type == "Conv" and _grouped(node):
        return "grouped (depthwise) Conv"
    return None


def float_by_recipe(model: onnx.ModelProto, recipe: Recipe) -> dict[str, int]:
    """How many nodes stay in float and why: matrix products the recipe skips, and every normalisation,
    softmax and activation (never quantized)."""
    constants = _constants(model)
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in QUANTIZABLE_OP_TYPES:
            reason = _why_float(node, constants, recipe)
            if reason:
                counts[reason] += 1
        elif node.op_type in FLOAT_OP_TYPES:
            counts[f"{node.op_type} (never quantized)"] += 1
    return dict(counts)


def quantizable_nodes(model: onnx.ModelProto, recipe: Recipe) -> list[str]:
    """Names of the nodes ``recipe`` quantizes, in graph order.

    ``MatMul`` needs a constant weight unless ``recipe.attention_matmuls``; grouped (depthwise)
    ``Conv`` stays in float: ONNX Runtime's CPU kernels run it faster in float than from Q/DQ.
    """
    constants = _constants(model)
    return [node.name for node in model.graph.node if node.op_type in QUANTIZABLE_OP_TYPES and _why_float(node, constants, recipe) is None]


def calibrated_nodes(model: onnx.ModelProto, recipe: Recipe) -> list[str]:
    """Nodes whose input and output ranges are measured: every ``MatMul`` / ``Gemm`` / ``Conv`` (the
    TensorRT calibration cache wants them all) except products of two activations the recipe leaves in
    float, whose attention maps would cost GBs to calibrate at 1024 px."""
    constants = _constants(model)
    return [
        node.name
        for node in model.graph.node
        if node.op_type in QUANTIZABLE_OP_TYPES and (recipe.attention_matmuls or not _activation_product(node, constants))
    ]


def blocks(names: list[str]) -> dict[str, list[str]]:
    """Node names grouped by block, blocks in order of first appearance."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for name in names:
        grouped[block_of(name)].append(name)
    return dict(grouped)
