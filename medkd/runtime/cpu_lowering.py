"""Lowering of a symmetric int8 Q/DQ graph for ONNX Runtime's x86 CPU kernels, in memory at load time.

The files ``medkd quantize`` writes keep the form TensorRT builds from (int8 Q/DQ, zero point 0,
float biases). ONNX Runtime's CPU optimizer runs such a graph well below what its integer kernels
can do, for four reasons this module removes before the session is made, and one of its kernels
would be wrong on many CPUs, which this module prevents:

- **int8 activations.** On x86, ONNX Runtime fuses ``DQ -> Conv -> Q`` into ``QLinearConv`` only for
  uint8 activations. :func:`unsigned_activations` re-encodes each activation Q/DQ pair as uint8 with
  zero point 128: the same scale, the same 256 levels, bit for bit the same values.
- **GELU split by Q/DQ.** ONNX Runtime gives each consumer of a ``DequantizeLinear`` its own copy
  before it fuses the exporter's erf-GELU (``x * 0.5 * (1 + erf(x / sqrt 2))``), which reads ``x``
  twice: the copies break the pattern and the GELU runs as five element-wise passes after two
  dequantizations. :func:`fuse_erf_gelu` makes it the single ``Gelu`` node the optimizer would.
- **Bias after the integer matrix product.** ONNX Runtime turns ``DQ(x) @ DQ(W)`` into
  ``MatMulIntegerToFloat`` but leaves the bias ``Add`` as a separate pass over the output.
  :func:`integer_matmuls` writes ``MatMulIntegerToFloat`` with the bias folded in.
- **int8 max pooling in NCHW.** ONNX Runtime moves the ``QuantizeLinear`` after a ``MaxPool`` in front
  of it (max commutes with quantization), where its int8 ``MaxPool`` runs a scalar NCHW loop: 1.8 ms of
  a ResNet18 encoder's 12 on a 2-core AVX-512 CPU, 30 times the float pooling. :func:`nhwc_max_pools`
  quantizes first and pools with ``com.microsoft`` ``NhwcMaxPool`` between transposes, which the
  optimizer cancels against the NHWC integer convolutions around it: the same integers, 0.1 ms.
- **Saturation without VNNI.** On x86 CPUs without VNNI (AVX2, AVX-512 before VNNI) the uint8 x int8
  kernels add pairs of products in 16 bits (``vpmaddubsw``), which saturate once ``255 * |w|`` pairs pass
  32767: a block's outputs were 4.7 % off on an AVX2 CPU. :func:`seven_bit_weights` re-quantizes each
  weight to at most 64 levels either side (ONNX Runtime's ``reduce_range``), on every CPU, so that the
  lowered graph computes the same integers everywhere; the DSC gate measures it through this lowering.
  A graph quantized for VNNI CPUs only (``medkd quantize --cpu-weight-bits 8``, marked in its metadata:
  :data:`WEIGHT_BITS_KEY`) keeps its 8-bit weights, whose rounding error is half as large; it is lowered
  and run only where the CPU has VNNI (``vpdpbusd`` adds in 32 bits) and refused elsewhere.

The on-disk graph is never changed; FP32 graphs (no ``QuantizeLinear``) are not touched.
:func:`write_cpu_graph` writes the lowered graph as a file of its own (``GRAPH.cpu.onnx``), after ONNX
Runtime's hardware-independent fusions, so that a plain ``onnxruntime.InferenceSession(path)`` runs the
integer kernels (``QLinearConv``, ``MatMulIntegerToFloat``) without medkd; such a file is marked
(``medkd.lowered_for`` in its metadata) and loaded as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from medkd.artifacts import atomic_path
from medkd.bench.device import cpu_flags, cpuinfo_fields
from medkd.errors import BadInput, MedkdError
from medkd.runtime.layout import read_onnx

MICROSOFT = "com.microsoft"
PROTOBUF_LIMIT = 2**31 - 1
CPU_RUNTIME = "onnxruntime-cpu"
VNNI_RUNTIME = "onnxruntime-cpu-vnni"
LOWERED_KEY = "medkd.lowered_for"
WEIGHT_BITS_KEY = "medkd.cpu_weight_bits"
WEIGHT_BITS = (7, 8)
# x86 flags of 32-bit uint8 x int8 dot products (AVX-512 VNNI, AVX-VNNI, AMX): no 16-bit pair sums.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
CPU_SUFFIX = ".cpu.onnx"
# ONNX Runtime's integer CPU kernels: what a lowered graph runs instead of float Conv / MatMul on Q/DQ.
INTEGER_KERNELS = ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul")


def has_qdq(path: Path) -> bool:
    """Whether the ONNX file at ``path`` holds quantize / dequantize nodes."""
    model = read_onnx(path)
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(node.op_type == "QuantizeLinear" for node in model.graph.node)


def _metadata(model: onnx.ModelProto, key: str) -> str | None:
    return next((p.value for p in model.metadata_props if p.key == key), None)


def is_lowered(model: onnx.ModelProto) -> bool:
    """Whether the graph is already lowered for ONNX Runtime's CPU kernels (:func:`write_cpu_graph`)."""
    return _metadata(model, LOWERED_KEY) in (CPU_RUNTIME, VNNI_RUNTIME)


def cpu_weight_bits(model: onnx.ModelProto) -> int:
    """The bits of the weights the graph's CPU lowering keeps: 8 where it was quantized for VNNI CPUs, else 7."""
    marked = _metadata(model, WEIGHT_BITS_KEY)
    return int(marked) if marked in {str(bits) for bits in WEIGHT_BITS} else 7


def lowered_runtime(model: onnx.ModelProto) -> str:
    """The runtime the graph's CPU-lowered form is for: :data:`VNNI_RUNTIME` with 8-bit weights, else :data:`CPU_RUNTIME`."""
    return VNNI_RUNTIME if cpu_weight_bits(model) == 8 else CPU_RUNTIME


def has_vnni(flags: set[str] | None = None) -> bool:
    """Whether the CPU (``flags``, default this one's) adds uint8 x int8 products in 32 bits (VNNI, AMX)."""
    return bool(VNNI_FLAGS & (cpu_flags(cpuinfo_fields()) if flags is None else flags))


def require_cpu_for(model: onnx.ModelProto, path: Path | str) -> None:
    """``BadInput`` when the graph keeps 8-bit weights for VNNI CPUs and this CPU has no VNNI: its
    integer kernels would saturate and return wrong values."""
    if cpu_weight_bits(model) == 8 and not has_vnni():  # a lowered file keeps the mark it was written from
        raise BadInput(f"{path} was quantized for CPUs with VNNI (8-bit weights) and this CPU has none: its integer kernels would saturate; quantize with --cpu-weight-bits 7 or run it on a VNNI CPU")


def cpu_file_name(file: str) -> str:
    """The name of a graph file's CPU-lowered form: ``encoder.onnx`` -> ``encoder.cpu.onnx``."""
    return f"{file.removesuffix('.onnx')}{CPU_SUFFIX}"


def cpu_graph_file(root: Path, entry: dict[str, Any]) -> str:
    """The file of an export layout's graph entry that ONNX Runtime on a CPU runs: its CPU-lowered form
    (the entry's ``cpu_file``, else ``GRAPH.cpu.onnx``, as ``medkd pack`` writes it for a CPU bundle)
    where ``root`` holds it, else the graph file itself."""
    lowered = entry.get("cpu_file") or cpu_file_name(entry["file"])
    return lowered if (Path(root) / lowered).is_file() else entry["file"]


def _consumers(nodes: list[onnx.NodeProto]) -> dict[str, list[int]]:
    """Indices into ``nodes`` of the nodes reading each value."""
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    return consumers


def _producers(nodes: list[onnx.NodeProto]) -> dict[str, int]:
    """Index into ``nodes`` of the node writing each value."""
    return {output: index for index, node in enumerate(nodes) for output in node.output}


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {tensor.name: tensor for tensor in model.graph.initializer}


def unsigned_activations(model: onnx.ModelProto) -> int:
    """Re-encode int8 activation Q/DQ pairs (zero point 0) as uint8 with zero point 128, in place.

    ``q_u8 = q_s8 + 128`` for every value, so every dequantized value is unchanged. Only pairs whose
    quantized tensor goes to ``DequantizeLinear`` nodes alone are touched; weights (constant inputs)
    stay int8. Returns how many ``QuantizeLinear`` nodes changed.
    """
    tensors = _initializers(model)
    nodes = list(model.graph.node)
    consumers = _consumers(nodes)
    graph_outputs = {value.name for value in model.graph.output}
    unsigned: dict[str, onnx.TensorProto] = {}
    retyped: set[str] = set()
    for node in nodes:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3 or node.input[0] in tensors:
            continue
        zero = tensors.get(node.input[2])
        readers = [nodes[i] for i in consumers.get(node.output[0], [])]
        if zero is None or zero.data_type != onnx.TensorProto.INT8 or np.any(numpy_helper.to_array(zero)):
            continue
        if node.output[0] in graph_outputs or not readers or any(r.op_type != "DequantizeLinear" for r in readers):
            continue
        for owner in (node, *readers):
            if len(owner.input) < 3:  # a DQ without zero point: it takes the Q's
                owner.input.append(node.input[2])
            name = f"{owner.input[2]}_uint8"
            if name not in unsigned:
                shape = numpy_helper.to_array(tensors.get(owner.input[2], zero)).shape
                unsigned[name] = numpy_helper.from_array(np.full(shape, 128, np.uint8), name)
            owner.input[2] = name
        retyped.add(node.output[0])
    model.graph.initializer.extend(unsigned.values())
    for value in model.graph.value_info:
        if value.name in retyped:
            value.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    _drop_unused_initializers(model)
    return len(retyped)


SATURATION_FREE_LEVEL = 64  # 255 * 64 * 2 = 32640 <= 32767: a pair of uint8 x int8 products fits int16


def seven_bit_weights(model: onnx.ModelProto) -> int:
    """Re-quantize every constant int8 weight of a ``DequantizeLinear`` to ``[-64, 64]`` (per channel
    where its scale is), its scale grown to match, as new initializers (weights or scales may be
    shared), in place. Returns how many weights changed."""
    tensors = _initializers(model)
    made: dict[tuple[str, str], tuple[str, str]] = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 2:
            continue
        weight, scale = tensors.get(node.input[0]), tensors.get(node.input[1])
        if weight is None or scale is None or weight.data_type != onnx.TensorProto.INT8:
            continue
        key = (weight.name, scale.name)
        if key not in made:
            values, scales = numpy_helper.to_array(weight).astype(np.float32), numpy_helper.to_array(scale)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % values.ndim if scales.size > 1 else None
            largest = np.abs(values).max(axis=tuple(i for i in range(values.ndim) if i != axis), keepdims=True)
            if not np.any(largest > SATURATION_FREE_LEVEL):
                continue
            largest = np.maximum(largest, SATURATION_FREE_LEVEL)
            levels = np.round(values * SATURATION_FREE_LEVEL / largest).astype(np.int8)
            grown = (scales * largest.reshape(scales.shape) / SATURATION_FREE_LEVEL).astype(scales.dtype)
            made[key] = (f"{weight.name}_7bit", f"{weight.name}_7bit_scale")
            model.graph.initializer.extend([numpy_helper.from_array(levels, made[key][0]), numpy_helper.from_array(grown, made[key][1])])
        node.input[0], node.input[1] = made[key]
    _drop_unused_initializers(model)
    return len(made)


def _scalar(constants: dict[str, onnx.TensorProto], name: str) -> float:
    """The value of a one-element constant (NaN for anything else)."""
    tensor = constants.get(name)
    value = numpy_helper.to_array(tensor) if tensor is not None else np.empty(0)
    return float(value.reshape(-1)[0]) if value.size == 1 else math.nan


def fuse_erf_gelu(model: onnx.ModelProto) -> int:
    """Replace each exported erf-GELU (``Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5``, or
    ``... -> Mul 0.5 -> Mul x``) by one ``com.microsoft`` ``Gelu`` node, in place. Returns how many."""
    nodes = list(model.graph.node)
    constants = {**_initializers(model), **{n.output[0]: n.attribute[0].t for n in nodes if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}}
    producers, consumers = _producers(nodes), _consumers(nodes)

    def only_reader(value: str, op_type: str) -> int | None:
        readers = consumers.get(value, [])
        return readers[0] if len(readers) == 1 and nodes[readers[0]].op_type == op_type else None

    def other(index: int, value: str) -> str:
        node = nodes[index]
        return node.input[1] if node.input[0] == value else node.input[0]

    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for erf, node in enumerate(nodes):
        divide = producers.get(node.input[0]) if node.op_type == "Erf" else None
        if divide is None or nodes[divide].op_type != "Div" or not math.isclose(_scalar(constants, nodes[divide].input[1]), math.sqrt(2.0), rel_tol=1e-4):
            continue
        x = nodes[divide].input[0]
        add = only_reader(node.output[0], "Add") if consumers.get(nodes[divide].output[0]) == [erf] else None
        if add is None or not math.isclose(_scalar(constants, other(add, node.output[0])), 1.0):
            continue
        first = only_reader(nodes[add].output[0], "Mul")
        last = only_reader(nodes[first].output[0], "Mul") if first is not None else None
        if last is None:
            continue
        factors = {other(first, nodes[add].output[0]), other(last, nodes[first].output[0])}
        if x not in factors or not math.isclose(_scalar(constants, (factors - {x}).pop() if len(factors) == 2 else ""), 0.5):
            continue
        replaced[last] = helper.make_node("Gelu", [x], [nodes[last].output[0]], name=f"{nodes[last].name}/Gelu", domain=MICROSOFT)
        removed.update((divide, erf, add, first))
    _rewrite(model, nodes, replaced, removed)
    return len(replaced)


def integer_matmuls(model: onnx.ModelProto) -> int:
    """Replace ``DQ(x) @ DQ(W)`` (x quantized per tensor, W a constant int8 ``[K, N]`` per tensor or per
    column) and its bias ``Add`` (a constant of ``N`` values, when it is the only reader) by one
    ``com.microsoft`` ``MatMulIntegerToFloat``, in place. Returns how many."""
    tensors = _initializers(model)
    nodes = list(model.graph.node)
    producers, consumers = _producers(nodes), _consumers(nodes)
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for index, matmul in enumerate(nodes):
        if matmul.op_type != "MatMul" or any(name not in producers for name in matmul.input):
            continue
        act, weight = (nodes[producers[name]] for name in matmul.input)
        if act.op_type != "DequantizeLinear" or weight.op_type != "DequantizeLinear" or len(act.input) < 3 or len(weight.input) < 3:
            continue
        w = tensors.get(weight.input[0])
        if w is None or w.data_type != onnx.TensorProto.INT8 or len(w.dims) != 2 or any(name not in tensors for name in (*act.input[1:], *weight.input[1:])):
            continue
        if numpy_helper.to_array(tensors[act.input[1]]).size != 1 or any(a.name == "axis" and a.i not in (1, -1) for a in weight.attribute):
            continue
        inputs = [act.input[0], weight.input[0], act.input[1], weight.input[1], act.input[2], weight.input[2]]
        output = matmul.output[0]
        readers = consumers.get(output, [])
        if len(readers) == 1 and nodes[readers[0]].op_type == "Add":
            add = nodes[readers[0]]
            bias = tensors.get(add.input[1] if add.input[0] == output else add.input[0])
            if bias is not None and list(bias.dims) == [w.dims[1]]:
                inputs.append(bias.name)
                output = add.output[0]
                removed.add(readers[0])
        replaced[index] = helper.make_node("MatMulIntegerToFloat", inputs, [output], name=matmul.name, domain=MICROSOFT)
    _rewrite(model, nodes, replaced, removed)
    _drop_unread_dequantizations(model)
    return len(replaced)


POOL_ATTRIBUTES = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")  # NhwcMaxPool's


def nhwc_max_pools(model: onnx.ModelProto) -> int:
    """Replace each 2-D float ``MaxPool`` read by one per-tensor ``QuantizeLinear`` alone by that
    quantization, then ``Transpose -> NhwcMaxPool -> Transpose`` on the integers, in place: the same
    values (max commutes with the monotonic quantization). Returns how many."""
    tensors = _initializers(model)
    nodes = list(model.graph.node)
    consumers = _consumers(nodes)
    graph_outputs = {value.name for value in model.graph.output}
    replaced: dict[int, list[onnx.NodeProto]] = {}
    for index, pool in enumerate(nodes):
        attributes = {a.name: helper.get_attribute_value(a) for a in pool.attribute}
        if pool.op_type != "MaxPool" or len(pool.output) != 1 or pool.output[0] in graph_outputs or len(attributes.get("kernel_shape", ())) != 2 or attributes.get("storage_order", 0):
            continue
        readers = consumers.get(pool.output[0], [])
        quantize = nodes[readers[0]] if len(readers) == 1 else None
        if quantize is None or quantize.op_type != "QuantizeLinear" or any(name not in tensors or numpy_helper.to_array(tensors[name]).size != 1 for name in quantize.input[1:]):
            continue
        quantized = f"{pool.output[0]}/quantized"
        nhwc = {name: value for name, value in attributes.items() if name in POOL_ATTRIBUTES}
        replaced[index] = [helper.make_node("QuantizeLinear", [pool.input[0], *quantize.input[1:]], [quantized], name=f"{quantize.name}/before_pool")]
        replaced[readers[0]] = [
            helper.make_node("Transpose", [quantized], [f"{quantized}/nhwc"], perm=[0, 2, 3, 1], name=f"{pool.name}/to_nhwc"),
            helper.make_node("NhwcMaxPool", [f"{quantized}/nhwc"], [f"{pool.output[0]}/nhwc"], name=f"{pool.name}/nhwc", domain=MICROSOFT, **nhwc),
            helper.make_node("Transpose", [f"{pool.output[0]}/nhwc"], [quantize.output[0]], perm=[0, 3, 1, 2], name=f"{pool.name}/to_nchw"),
        ]
    _rewrite(model, nodes, replaced, set())
    return len(replaced) // 2


def _rewrite(model: onnx.ModelProto, nodes: list[onnx.NodeProto], replaced: Mapping[int, onnx.NodeProto | list[onnx.NodeProto]], removed: set[int]) -> None:
    """Put ``replaced`` nodes (one, or several in order) at their indices and drop ``removed`` ones,
    keeping topological order."""
    if not replaced and not removed:
        return
    kept = [new for i, node in enumerate(nodes) if i not in removed for new in _as_list(replaced.get(i, node))]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    if any(node.domain == MICROSOFT for node in kept) and not any(op.domain == MICROSOFT for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MICROSOFT, 1))


def _as_list(nodes: onnx.NodeProto | list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    return nodes if isinstance(nodes, list) else [nodes]


def _drop_unread_dequantizations(model: onnx.ModelProto) -> None:
    """Remove ``DequantizeLinear`` nodes nobody reads any more, then initializers nobody reads."""
    read = {name for node in model.graph.node for name in node.input} | {value.name for value in model.graph.output}
    kept = [n for n in model.graph.node if n.op_type != "DequantizeLinear" or n.output[0] in read]
    if len(kept) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(kept)
    _drop_unused_initializers(model)


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    read = {name for node in model.graph.node for name in node.input}
    unused = [tensor for tensor in model.graph.initializer if tensor.name not in read]
    for tensor in unused:
        model.graph.initializer.remove(tensor)


def lower_for_cpu(model: onnx.ModelProto) -> dict[str, int]:
    """All five lowerings, in place, on a quantized graph (the weights made 7-bit unless it is marked
    for VNNI CPUs: :func:`cpu_weight_bits`); how many nodes (or weights) each changed."""
    if not is_quantized(model):
        return {}
    return {
        "seven_bit_weights": seven_bit_weights(model) if cpu_weight_bits(model) == 7 else 0,
        "unsigned_activations": unsigned_activations(model),
        "gelu": fuse_erf_gelu(model),
        "matmul_integer_to_float": integer_matmuls(model),
        "nhwc_max_pools": nhwc_max_pools(model),
    }


def cpu_model(path: Path) -> str | bytes:
    """What to give ``onnxruntime.InferenceSession`` for the graph at ``path``: the path itself for a
    float graph, else the lowered graph's bytes (external data read in)."""
    model = read_onnx(path)
    if not is_quantized(model) and not is_lowered(model):
        return str(path)
    require_cpu_for(model, path)
    if is_lowered(model):
        return str(path)
    onnx.load_external_data_for_model(model, str(Path(path).parent))
    lower_for_cpu(model)
    if model.ByteSize() >= PROTOBUF_LIMIT:
        return str(path)  # too large to hand over in memory: ONNX Runtime's own fusions only
    return model.SerializeToString()


def write_cpu_graph(source: Path, target: Path) -> dict[str, int]:
    """Write the quantized graph at ``source`` to ``target`` lowered for ONNX Runtime's CPU kernels and
    optimized by ONNX Runtime at its extended level (the fusions that do not depend on the CPU: no
    NCHWc layouts), marked as lowered for :func:`lowered_runtime`; atomically. Returns the lowering's counts."""
    model = read_onnx(source)
    if not is_quantized(model):
        raise MedkdError(f"{source} holds no QuantizeLinear nodes: only quantized graphs are lowered")
    onnx.load_external_data_for_model(model, str(Path(source).parent))
    counts = lower_for_cpu(model)
    model.metadata_props.add(key=LOWERED_KEY, value=lowered_runtime(model))
    if model.ByteSize() >= PROTOBUF_LIMIT:
        raise MedkdError(f"{source} is over 2 GiB: its CPU-lowered graph cannot be written")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.log_severity_level = 3  # the optimizer's notes on initializers it drops
    with atomic_path(target) as tmp:
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return counts
