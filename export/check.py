"""``medkd export check``: will TensorRT's ONNX parser take this graph? A lint that runs on a CPU.

Rules: the opset is within the parser's range for the given TensorRT version; every operator is one
the parser supports (onnx-tensorrt ``docs/operators.md``, default domain only); Q/DQ nodes are
symmetric int8 (zero point present, int8, all zero; scales positive); inputs that feed shapes are
int32 / int64; every dynamic input dimension has an optimization profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from medkd.errors import BadInput
from medkd.runtime.layout import read_onnx

# Highest ONNX opset the parser of each TensorRT release accepts (support matrices of 8.6 to 11).
MAX_OPSET = {"8.6": 17, "10.0": 20, "10.3": 20, "10.7": 20, "10.8": 22, "10.13": 22, "11.0": 22}
MIN_OPSET = 9

# Operators of the default ONNX domain that TensorRT's ONNX parser implements (10.x / 11).
SUPPORTED_OPS = frozenset(
    """Abs Acos Acosh Add AffineGrid And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor BlackmanWindow Cast CastLike Ceil Celu Clip
    Compress Concat ConcatFromSequence Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
    DFT DeformConv DepthToSpace DequantizeLinear Det Div Dropout DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand
    EyeLike Flatten Floor GRU Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
    Greater GreaterOrEqual GridSample GroupNormalization HammingWindow HannWindow HardSigmoid HardSwish Hardmax
    Identity If ImageScaler InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less
    LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool MaxRoiPool Mean MeanVarianceNormalization
    Min Mish Mod Mul Multinomial Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad ParametricSoftplus Pow
    QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1
    ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
    Reshape Resize ReverseSequence RoiAlign Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu
    SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength Shape Shrink Sigmoid
    Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split SplitToSequence Sqrt Squeeze Sub Sum Tan
    Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor""".split()
)

# (op type, index of the input that is a shape / size operand)
SHAPE_OPERANDS = {
    ("Reshape", 1), ("Expand", 1), ("Tile", 1), ("ConstantOfShape", 0), ("Resize", 3), ("Slice", 1), ("Slice", 2),
    ("Range", 0), ("Range", 1), ("OneHot", 1), ("TopK", 1), ("Upsample", 1), ("Unsqueeze", 1), ("Squeeze", 1),
}
# Operators through which a value stays "shape arithmetic".
SHAPE_ARITHMETIC = {"Cast", "Gather", "Concat", "Unsqueeze", "Squeeze", "Mul", "Div", "Add", "Sub", "Floor", "Ceil", "Round", "Max", "Min", "Slice", "Reshape", "Identity"}
INTEGER_TYPES = {onnx.TensorProto.INT32, onnx.TensorProto.INT64}


@dataclass(frozen=True)
class Finding:
    """One lint result: ``error`` means the parser or builder will refuse the graph."""

    severity: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: [{self.rule}] {self.message}"


def _max_opset(version: str) -> int:
    if version in MAX_OPSET:
        return MAX_OPSET[version]
    major_minor = ".".join(version.split(".")[:2])
    if major_minor in MAX_OPSET:
        return MAX_OPSET[major_minor]
    raise BadInput(f"unknown TensorRT version '{version}' (known: {', '.join(MAX_OPSET)})")


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _check_opset(model: onnx.ModelProto, version: str) -> list[Finding]:
    top = _max_opset(version)
    findings = []
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and not MIN_OPSET <= entry.version <= top:
            findings.append(Finding("error", "opset", f"opset {entry.version} is outside {MIN_OPSET}-{top}, what TensorRT {version}'s parser takes"))
    return findings


def _check_ops(model: onnx.ModelProto) -> list[Finding]:
    findings = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            findings.append(Finding("error", "operator", f"{node.op_type} ({node.name}) is in domain '{node.domain}', which the parser does not implement"))
        elif node.op_type not in SUPPORTED_OPS:
            findings.append(Finding("error", "operator", f"{node.op_type} ({node.name}) is not supported by TensorRT's ONNX parser"))
    return findings


def _check_qdq(model: onnx.ModelProto) -> list[Finding]:
    constants = _constants(model)
    findings = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        label = f"{node.op_type} {node.name}"
        scale = constants.get(node.input[1])
        if scale is None:
            findings.append(Finding("error", "qdq", f"{label}: scale is not a constant"))
        elif not np.all(scale > 0):
            findings.append(Finding("error", "qdq", f"{label}: scale has values <= 0"))
        if len(node.input) < 3 or not node.input[2]:
            findings.append(Finding("error", "qdq", f"{label}: no zero point (ONNX then means uint8); TensorRT needs an int8 zero point of 0"))
            continue
        zero = constants.get(node.input[2])
        if zero is None:
            findings.append(Finding("error", "qdq", f"{label}: zero point is not a constant"))
        elif zero.dtype != np.int8:
            findings.append(Finding("error", "qdq", f"{label}: zero point is {zero.dtype}; TensorRT takes int8 only"))
        elif np.any(zero != 0):
            findings.append(Finding("error", "qdq", f"{label}: asymmetric (zero point {zero.ravel()[:4].tolist()}); TensorRT takes symmetric int8 only"))
    return findings


def shape_inputs(model: onnx.ModelProto) -> set[str]:
    """Graph inputs whose values reach a shape operand (through shape arithmetic)."""
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))
    found = set()
    for graph_input in model.graph.input:
        frontier, seen = [graph_input.name], set()
        while frontier:
            value = frontier.pop()
            if value in seen:
                continue
            seen.add(value)
            for node, index in consumers.get(value, []):
                if (node.op_type, index) in SHAPE_OPERANDS:
                    found.add(graph_input.name)
                elif node.op_type in SHAPE_ARITHMETIC:
                    frontier.extend(node.output)
    return found


def _check_shape_inputs(model: onnx.ModelProto) -> list[Finding]:
    findings = []
    inputs = {i.name: i for i in model.graph.input}
    for name in sorted(shape_inputs(model)):
        dtype = inputs[name].type.tensor_type.elem_type
        if dtype not in INTEGER_TYPES:
            type_name = onnx.TensorProto.DataType.Name(dtype)
            findings.append(
                Finding("error", "shape-input", f"input '{name}' is a shape tensor of type {type_name}; TensorRT needs int32/int64 shape tensors (drop it, e.g. use decoder_trt.onnx)")
            )
        else:
            findings.append(Finding("warning", "shape-input", f"input '{name}' is a shape tensor: give it a shape-value profile"))
    return findings


def _check_profiles(model: onnx.ModelProto, profiles: dict[str, list]) -> list[Finding]:
    findings = []
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if d.dim_param or not d.HasField("dim_value")]
        if dynamic and graph_input.name not in profiles:
            findings.append(Finding("error", "profile", f"input '{graph_input.name}' has dynamic axes {dynamic} and no optimization profile"))
    return findings


def check_onnx(path: str | Path, tensorrt: str = "10.3", profiles: dict[str, list] | None = None) -> list[Finding]:
    """Every finding for the ONNX file at ``path`` (empty: TensorRT should take it)."""
    model = read_onnx(path)
    return (
        _check_opset(model, tensorrt)
        + _check_ops(model)
        + _check_qdq(model)
        + _check_shape_inputs(model)
        + _check_profiles(model, profiles or {})
    )
