"""Two ways to turn one float ONNX graph into a symmetric int8 Q/DQ graph: ONNX Runtime and NNCF.

Both quantize exactly the nodes they are given (:func:`medkd.quantize.nodes.quantizable_nodes` less
those kept in float): weights per output channel, activations per tensor, symmetric int8. ONNX
Runtime reads activation ranges from a calibration cache measured once (so a sensitivity sweep does
not recalibrate); NNCF (ONNX backend, ``preset=PERFORMANCE``) calibrates itself on the same feeds.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import onnx
from medkd.quantize.calibration import ORT_METHODS, Feed, FeedReader
from medkd.quantize.nodes import MOVEMENT_OP_TYPES, GraphIndex
from medkd.quantize.recipe import Recipe
from onnx import numpy_helper


@contextlib.contextmanager
def _quiet() -> None:
    """Silence the libraries' per-call warnings ("consider pre-processing", NNCF's INFO lines)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def ort_quantize(source: Path, target: Path, nodes: list[str], recipe: Recipe, ranges_cache: Path, feeds: list[Feed], external_data: bool = False) -> None:
    """``quantize_static`` in QDQ format with the recipe's symmetric int8 settings."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,  # biases stay float: TensorRT takes int8 Q/DQ only
        "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"],
    }
    if recipe.smooth_quant is not None:
        extra.update({"SmoothQuant": True, "SmoothQuantAlpha": recipe.smooth_quant, "CalibMovingAverage": recipe.method == "mean-minmax"})
    with _quiet():
        quantize_static(
            source,
            target,
            FeedReader(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=[*recipe.op_types, *MOVEMENT_OP_TYPES],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes,
            use_external_data_format=external_data,
            calibrate_method=ORT_METHODS[recipe.method],
            extra_options=extra,
            calibration_cache_path=None if recipe.smooth_quant is not None else ranges_cache,
        )
    model = onnx.load(str(target))
    if shapes_off_fusions(model):
        _save(model, target, external_data)


def shapes_off_fusions(model: onnx.ModelProto) -> int:
    """Move ``Shape`` nodes off the tensors that ONNX Runtime fuses away; each reads a tensor of the
    same shape instead. Returns how many ``Shape`` nodes were rewired.

    - A ``Shape`` of a DQ output reads the float tensor the Q/DQ pair quantizes: a DQ output with a
      second consumer keeps ONNX Runtime from fusing the DQ / MatMul / DQ unit into
      ``MatMulIntegerToFloat`` (SAM's window attention, ``B, H, W, _ = x.shape``, then ran its qkv
      projection as dequantized weights times float activations, slower than FP32).
    - A ``Shape`` of a convolution's output that is quantized reads its dequantized copy: a float
      output with a second consumer keeps ``DQ -> Conv -> Q`` from becoming ``QLinearConv`` (TinyViT's
      patch merging, ``x.flatten(2)`` after its last convolution).
    """
    graph = GraphIndex(model)
    producers = graph.producers

    def dequantized(value: str) -> str | None:
        """The output of a Q -> DQ pair on ``value``, if the value is quantized."""
        for quantize in graph.readers.get(value, []):
            if quantize.op_type == "QuantizeLinear":
                for dequantize in graph.readers.get(quantize.output[0], []):
                    if dequantize.op_type == "DequantizeLinear":
                        return dequantize.output[0]
        return None

    rewired = 0
    for node in model.graph.node:
        if node.op_type != "Shape":
            continue
        source = producers.get(node.input[0])
        if source is not None and source.op_type == "Conv" and (copy := dequantized(node.input[0])) is not None:
            node.input[0] = copy
            rewired += 1
            continue
        quantize = producers.get(source.input[0]) if source is not None and source.op_type == "DequantizeLinear" else None
        if quantize is not None and quantize.op_type == "QuantizeLinear" and getattr(producers.get(quantize.input[0]), "op_type", None) != "Conv":
            node.input[0] = quantize.input[0]
            rewired += 1
    return rewired


def _signed_activations(model: onnx.ModelProto) -> int:
    """Make NNCF's unsigned quantizers (uint8, zero point 0, after ReLU) symmetric int8 in place.

    NNCF picks uint8 for non-negative activations and cannot be forced to signed ones; the same range
    ``[0, 255 s]`` in int8 with zero point 0 takes the scale ``255 s / 127``. Returns how many nodes
    changed. Any other zero point is left for the symmetry check to refuse.
    """
    tensors = {t.name: t for t in model.graph.initializer}
    retyped: set[str] = set()
    changed = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zero, scale = tensors.get(node.input[2]), tensors.get(node.input[1])
        if zero is None or scale is None or zero.data_type != onnx.TensorProto.UINT8:
            continue
        if np.any(numpy_helper.to_array(zero) != 0):
            continue
        signed_scale = numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(255.0 / 127.0), f"{node.input[1]}_signed")
        signed_zero = numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(zero), np.int8), f"{node.input[2]}_signed")
        for tensor in (signed_scale, signed_zero):
            if tensor.name not in tensors:
                model.graph.initializer.append(tensor)
                tensors[tensor.name] = tensor
        node.input[1], node.input[2] = signed_scale.name, signed_zero.name
        if node.op_type == "QuantizeLinear":
            retyped.add(node.output[0])
        changed += 1
    for value in model.graph.value_info:
        if value.name in retyped:
            value.type.tensor_type.elem_type = onnx.TensorProto.INT8
    used = {name for node in model.graph.node for name in node.input}
    unused = [t for t in model.graph.initializer if t.name not in used]
    for tensor in unused:
        model.graph.initializer.remove(tensor)
    return changed


def _nncf_range_estimator(recipe: Recipe):
    """NNCF's counterpart of each calibration method: global min / max, mean of each image's min / max,
    mean quantiles, histogram."""
    from nncf.quantization.range_estimator import (
        AggregatorType,
        RangeEstimatorParameters,
        RangeEstimatorParametersSet,
        StatisticsCollectorParameters,
        StatisticsType,
    )

    if recipe.method == "minmax":
        return RangeEstimatorParametersSet.MINMAX
    if recipe.method == "mean-minmax":
        return RangeEstimatorParametersSet.MEAN_MINMAX
    if recipe.method == "entropy":
        return RangeEstimatorParametersSet.HISTOGRAM
    quantile = StatisticsCollectorParameters(StatisticsType.QUANTILE, AggregatorType.MEAN, quantile_outlier_prob=1.0 - recipe.percentile / 100.0)
    return RangeEstimatorParameters(min=quantile, max=quantile)


def nncf_quantize(source: Path, target: Path, nodes: list[str], recipe: Recipe, feeds: list[Feed], external_data: bool = False) -> None:
    """``nncf.quantize`` on the ONNX model: symmetric preset, signed activations, only ``nodes``."""
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    model = onnx.load(str(source))
    wanted = set(nodes)
    ignored = [node.name for node in model.graph.node if node.name not in wanted]
    estimator = _nncf_range_estimator(recipe)
    parameters = AdvancedQuantizationParameters(
        activations_range_estimator_params=estimator,
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1 if recipe.smooth_quant is None else recipe.smooth_quant),
    )
    with _quiet():
        quantized = nncf.quantize(
            model,
            nncf.Dataset(feeds),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(feeds),
            fast_bias_correction=True,
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
            advanced_parameters=parameters,
        )
    _signed_activations(quantized)
    shapes_off_fusions(quantized)
    _save(quantized, target, external_data)


def _save(model: onnx.ModelProto, target: Path, external_data: bool) -> None:
    if external_data:
        onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True, location=f"{target.name}.data")
    else:
        onnx.save_model(model, str(target))
