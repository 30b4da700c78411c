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
# Element-wise activations between two convolutions (the exporter's erf-GELU is Div / Erf / Add / Mul).
ACTIVATION_OP_TYPES = ("Div", "Erf", "Add", "Mul", "Gelu", "Relu", "Sigmoid", "Tanh", "Clip", "HardSwish", "HardSigmoid")
# Operators that only move data: a quantized input read through them moves through them in int8.
MOVEMENT_OP_TYPES = ("Transpose", "Reshape", "Pad", "Slice", "Squeeze", "Unsqueeze")


def block_of(node_name: str) -> str:
    """The block a node belongs to, from its exported name."""
    modules = node_name.split("/")[1:-1]
    for index, module in enumerate(modules):
        if _INDEXED.match(module):
            end = index + 2 if index + 1 < len(modules) and _NESTED.match(modules[index + 1]) else index + 1
            return "/" + "/".join(modules[:end])
    return "/" + "/".join(modules[:2])


class GraphIndex:
    """What the node rules read of a graph: inputs, constants, who writes and reads each value."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.constants = {t.name for t in model.graph.initializer} | {node.output[0] for node in model.graph.node if node.op_type == "Constant"}
        self.producers = {output: node for node in model.graph.node for output in node.output}
        self.readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in model.graph.node:
            for name in node.input:
                self.readers[name].append(node)
        self.inputs = {value.name for value in model.graph.input}


def _grouped(node: onnx.NodeProto) -> bool:
    return any(a.name == "group" and a.i > 1 for a in node.attribute)


def _activation_product(node: onnx.NodeProto, constants: set[str]) -> bool:
    """A ``MatMul`` of two activations (attention ``q @ k``, ``attn @ v``), not of an activation and a weight."""
    return node.op_type == "MatMul" and node.input[1] not in constants


def _fed_by_convolutions(node: onnx.NodeProto, graph: GraphIndex, recipe: Recipe) -> bool:
    """Whether ``node``'s input comes from quantized dense convolutions through element-wise
    activations only (the depthwise convolution of an MBConv or patch-merging block)."""
    pending, seen, sources = [node.input[0]], set(), 0
    while pending:
        value = pending.pop()
        producer = graph.producers.get(value)
        if value in seen or value in graph.constants:
            continue
        seen.add(value)
        if producer is None:
            return False
        if producer.op_type in ACTIVATION_OP_TYPES:
            pending.extend(producer.input)
        elif producer.op_type == "Conv" and not _grouped(producer) and _why_float(producer, graph, recipe) is None:
            sources += 1
        else:
            return False
    return sources > 0


def _why_float(node: onnx.NodeProto, graph: GraphIndex, recipe: Recipe) -> str | None:
    """Why the recipe leaves a ``MatMul`` / ``Gemm`` / ``Conv`` in float (``None``: it quantizes it)."""
    if node.op_type not in recipe.op_types:
        return f"{node.op_type} not in the recipe's operator types"
    if _activation_product(node, graph.constants) and not recipe.attention_matmuls:
        return "product of two activations (attention)"
    if node.op_type != "Conv":
        return None
    if node.input[0] in graph.inputs:
        return "Conv on the model's input (the image stem)"
    if _grouped(node) and not _fed_by_convolutions(node, graph, recipe):
        return "grouped (depthwise) Conv outside a convolution block"
    return None


def float_by_recipe(model: onnx.ModelProto, recipe: Recipe) -> dict[str, int]:
    """How many nodes stay in float and why: matrix products the recipe skips, and every normalisation,
    softmax and activation (never quantized)."""
    graph = GraphIndex(model)
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in QUANTIZABLE_OP_TYPES:
            reason = _why_float(node, graph, recipe)
            if reason:
                counts[reason] += 1
        elif node.op_type in FLOAT_OP_TYPES:
            counts[f"{node.op_type} (never quantized)"] += 1
    return dict(counts)


def quantizable_nodes(model: onnx.ModelProto, recipe: Recipe) -> list[str]:
    """Names of the nodes ``recipe`` quantizes, in graph order.

    ``MatMul`` needs a constant weight unless ``recipe.attention_matmuls``. The ``Conv`` reading the
    image stays in float (int8 there cost SAM ViT's patch embedding 10% embedding error and runs no
    faster on three input channels); on ONNX Runtime's CPU kernels a grouped (depthwise) ``Conv``
    pays in int8 only between two int8 convolutions (activations stay int8 and channels-last).
    """
    graph = GraphIndex(model)
    return [node.name for node in model.graph.node if node.op_type in QUANTIZABLE_OP_TYPES and _why_float(node, graph, recipe) is None]


def movement_chains(model: onnx.ModelProto, names: list[str]) -> dict[str, list[str]]:
    """For each of ``names``, the data-movement nodes (``Transpose``, ``Reshape``, ``Pad``, ...) its
    activation input comes through, each read by nothing else: quantized with it, they move int8
    data (a quarter of the bytes) instead of float (a window partition before ``qkv``)."""
    graph = GraphIndex(model)
    nodes = {node.name: node for node in model.graph.node}
    chains: dict[str, list[str]] = {}
    for name in names:
        chain, value = [], nodes[name].input[0]
        while (producer := graph.producers.get(value)) is not None and producer.op_type in MOVEMENT_OP_TYPES and len(graph.readers[value]) == 1:
            chain.append(producer.name)
            value = producer.input[0]
        chains[name] = chain
    return chains


def calibrated_nodes(model: onnx.ModelProto, recipe: Recipe) -> list[str]:
    """Nodes whose input and output ranges are measured: every ``MatMul`` / ``Gemm`` / ``Conv`` (the
    TensorRT calibration cache wants them all) except products of two activations the recipe leaves in
    float, whose attention maps would cost GBs to calibrate at 1024 px; and the data-movement nodes in
    front of the quantized ones."""
    graph = GraphIndex(model)
    products = [
        node.name
        for node in model.graph.node
        if node.op_type in QUANTIZABLE_OP_TYPES and (recipe.attention_matmuls or not _activation_product(node, graph.constants))
    ]
    movements = [m for chain in movement_chains(model, quantizable_nodes(model, recipe)).values() for m in chain]
    return products + movements


def blocks(names: list[str]) -> dict[str, list[str]]:
    """Node names grouped by block, blocks in order of first appearance."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for name in names:
        grouped[block_of(name)].append(name)
    return dict(grouped)
