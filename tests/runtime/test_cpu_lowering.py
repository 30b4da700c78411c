"""The in-memory lowering of Q/DQ graphs for ONNX Runtime's x86 kernels: same results, fused kernels,
the file on disk untouched."""

from __future__ import annotations

import collections
import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from medkd.errors import BadInput, MedkdError
from medkd.runtime import cpu_lowering
from medkd.runtime.cpu_lowering import (
    CPU_RUNTIME,
    INTEGER_KERNELS,
    VNNI_RUNTIME,
    WEIGHT_BITS_KEY,
    cpu_weight_bits,
    cpu_file_name,
    cpu_model,
    fuse_erf_gelu,
    has_vnni,
    integer_matmuls,
    is_lowered,
    lower_for_cpu,
    lowered_runtime,
    nhwc_max_pools,
    seven_bit_weights,
    unsigned_activations,
    write_cpu_graph,
)
from medkd.runtime.layout import read_metadata, stamp_metadata
from medkd.runtime.onnx_runtime import cpu_options, cpu_session
from medkd.quantize.backends import ort_quantize
from medkd.quantize.calibration import activation_ranges
from medkd.quantize.fusion import unfused_nodes
from medkd.quantize.nodes import calibrated_nodes, float_by_recipe, quantizable_nodes
from medkd.quantize.recipe import Recipe
from medkd.quantize.symmetry import require_symmetric
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization.calibrate import save_tensors_data
from torch import nn


class ConvBlock(nn.Module):
    """An image stem, an MBConv-like block, its output flattened to tokens and projected: what TinyViT
    exports."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.conv1 = nn.Conv2d(32, 64, 1)
        self.act = nn.GELU()
        self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64)
        self.conv2 = nn.Conv2d(64, 32, 1)
        self.proj = nn.Linear(32, 48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.act(self.dw(self.act(self.conv1(self.stem(x))))))
        return self.proj(x.flatten(2).transpose(1, 2))


def _plain_session(model: Path | bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), cpu_options(1), providers=["CPUExecutionProvider"])


class PooledStem(nn.Module):
    """A ResNet stem (convolution, ReLU, 3 x 3 max pooling at stride 2) and a convolution after it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv = nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(torch.relu(self.stem(x))))


def _quantized(module: nn.Module, directory: Path) -> tuple[Path, Path, list[str], list[dict[str, np.ndarray]]]:
    """``module`` exported (opset 17, as ``medkd export onnx``) on 12 x 12 images and quantized with
    the default recipe: the float file, the Q/DQ file, the quantized nodes and four inputs."""
    torch.manual_seed(0)
    fp32 = directory / "fp32.onnx"
    torch.onnx.export(module.eval(), (torch.randn(1, 3, 12, 12),), str(fp32), dynamo=False, opset_version=17, input_names=["x"], output_names=["y"])
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 3, 12, 12)).astype(np.float32)} for _ in range(4)]
    model = onnx.load(str(fp32))
    nodes = quantizable_nodes(model, Recipe())
    ranges = directory / "ranges.json"
    save_tensors_data(activation_ranges(fp32, feeds, calibrated_nodes(model, Recipe()), "minmax"), ranges)
    int8 = directory / "int8.onnx"
    ort_quantize(fp32, int8, nodes, Recipe(), ranges, feeds)
    return fp32, int8, nodes, feeds


@pytest.fixture(scope="module")
def block_graphs(tmp_path_factory):
    """The MBConv-like block, exported and quantized."""
    torch.manual_seed(0)
    return _quantized(ConvBlock(), tmp_path_factory.mktemp("lowering"))


def test_max_pooling_runs_on_the_integers_in_nhwc_with_the_same_values(tmp_path):
    torch.manual_seed(0)
    _, int8, _, feeds = _quantized(PooledStem(), tmp_path)
    model = onnx.load(str(int8))
    assert [n.op_type for n in model.graph.node if n.op_type == "MaxPool"] == ["MaxPool"]
    without = onnx.load(str(int8))
    for lowering in (seven_bit_weights, unsigned_activations, fuse_erf_gelu, integer_matmuls):
        lowering(without)
    counts = lower_for_cpu(model)
    assert counts["nhwc_max_pools"] == 1
    assert [n.op_type for n in model.graph.node if "Pool" in n.op_type] == ["NhwcMaxPool"]
    assert nhwc_max_pools(model) == 0  # nothing left to lower
    pooled, reference = _plain_session(model.SerializeToString()), _plain_session(without.SerializeToString())
    for feed in feeds:
        np.testing.assert_array_equal(pooled.run(None, feed)[0], reference.run(None, feed)[0])


def test_the_recipe_quantizes_every_convolution_of_the_block_and_the_projection(block_graphs):
    fp32, _, nodes, _ = block_graphs
    assert sorted(n.split("/")[1] for n in nodes) == ["conv1", "conv2", "dw", "proj"]  # not the stem
    assert float_by_recipe(onnx.load(str(fp32)), Recipe())["Conv on the model's input (the image stem)"] == 1


def test_lowering_counts_and_same_outputs(block_graphs):
    _, int8, _, feeds = block_graphs
    counts = lower_for_cpu(onnx.load(str(int8)))
    # four weights re-quantized to 7 bits; the stem's output, the three convolutions, the two GELUs and
    # the projection input are quantized
    assert counts == {"seven_bit_weights": 4, "unsigned_activations": 7, "gelu": 2, "matmul_integer_to_float": 1, "nhwc_max_pools": 0}
    seven_bit = onnx.load(str(int8))
    seven_bit_weights(seven_bit)
    plain_8bit, plain_7bit, lowered = _plain_session(int8), _plain_session(seven_bit.SerializeToString()), cpu_session(int8, 1)
    for feed in feeds:
        expected, reference, got = plain_8bit.run(None, feed)[0], plain_7bit.run(None, feed)[0], lowered.run(None, feed)[0]
        # The integer kernels compute exactly what the 7-bit Q/DQ graph does in float (up to a rounding
        # step where they requantize their outputs): no saturation, whatever the CPU's instructions.
        assert np.linalg.norm(got - reference) / np.linalg.norm(reference) < 1e-3
        # against the 8-bit graph: the 7-bit weights' rounding (random weights of a 3-channel stem are
        # the worst case: about 3.5 %; the DSC gate measures what it costs a real model)
        assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 0.05


def test_seven_bit_weights_fit_int16_pairs_and_keep_their_values(block_graphs):
    _, int8, _, _ = block_graphs
    original, lowered = onnx.load(str(int8)), onnx.load(str(int8))
    seven_bit_weights(lowered)
    before, after = ({t.name: numpy_helper.to_array(t) for t in m.graph.initializer} for m in (original, lowered))
    weights = [n for n in lowered.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("_7bit")]
    assert len(weights) == 4
    for node in weights:
        levels, scale = after[node.input[0]], after[node.input[1]]
        assert np.abs(levels.astype(np.int32)).max() == 64 and 255 * 64 * 2 <= 32767
        name = node.input[0].removesuffix("_7bit")
        old_scale = next(before[n.input[1]] for n in original.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == name)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [-1 if i == axis else 1 for i in range(levels.ndim)] if scale.size > 1 else []
        dequantized_before = before[name] * old_scale.reshape(shape)
        dequantized_after = levels * scale.reshape(shape)
        step = scale.reshape(shape) * np.ones_like(dequantized_after)
        assert np.all(np.abs(dequantized_after - dequantized_before) <= 0.5 * step + 1e-7)


def test_lowered_graph_runs_every_convolution_as_an_integer_kernel(block_graphs):
    _, int8, nodes, _ = block_graphs
    assert unfused_nodes(int8, nodes) == []


def test_the_file_on_disk_keeps_its_symmetric_int8_form(block_graphs):
    _, int8, _, _ = block_graphs
    before = hashlib.sha256(int8.read_bytes()).hexdigest()
    cpu_session(int8, 1)
    assert hashlib.sha256(int8.read_bytes()).hexdigest() == before
    require_symmetric(int8)


def test_float_graphs_are_not_lowered(block_graphs):
    fp32, _, _, _ = block_graphs
    assert cpu_model(fp32) == str(fp32)
    assert lower_for_cpu(onnx.load(str(fp32))) == {}


def test_gelu_fusion_is_exact_on_the_float_graph(block_graphs):
    fp32, _, _, feeds = block_graphs
    model = onnx.load(str(fp32))
    assert fuse_erf_gelu(model) == 2
    assert not any(node.op_type == "Erf" for node in model.graph.node)
    fused = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = _plain_session(fp32).run(None, feeds[0])[0]
    np.testing.assert_allclose(fused.run(None, feeds[0])[0], expected, rtol=1e-5, atol=1e-5)


def _pair_graph(zero_point: np.ndarray) -> onnx.ModelProto:
    """x -> Q -> DQ -> Relu, with a weight DQ beside it that must stay int8."""
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(zero_point, "z"),
        numpy_helper.from_array(np.array([[3, -7]], np.int8), "w"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("Relu", ["xd"], ["y"]),
        helper.make_node("DequantizeLinear", ["w", "s"], ["wd"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2]), helper.make_tensor_value_info("wd", TensorProto.FLOAT, [1, 2])]
    graph = helper.make_graph(nodes, "pair", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unsigned_activations_are_the_same_values_bit_for_bit():
    model = _pair_graph(np.array(0, np.int8))
    x = np.linspace(-9.0, 9.0, 8, dtype=np.float32).reshape(4, 2)  # beyond the int8 range on both sides
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert unsigned_activations(model) == 1
    zero_points = {t.name: t.data_type for t in model.graph.initializer}
    assert zero_points["z_uint8"] == TensorProto.UINT8 and model.graph.node[3].input == ["w", "s"]
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_asymmetric_pairs_are_left_alone():
    model = _pair_graph(np.array(3, np.int8))
    assert unsigned_activations(model) == 0


def test_integer_matmul_folds_its_bias(block_graphs):
    _, int8, _, _ = block_graphs
    model = onnx.load(str(int8))
    unsigned_activations(model)
    assert integer_matmuls(model) == 1
    (node,) = [n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert len(node.input) == 7 and not any(n.op_type == "MatMul" for n in model.graph.node)
    assert "/proj/Add" not in {n.name for n in model.graph.node}


def integer_kernel_report(model: onnx.ModelProto) -> tuple[collections.Counter, list[str]]:
    """Integer kernels of a graph by op type, and the names of float ``Conv`` / ``MatMul`` / ``Gemm`` nodes
    that still read a dequantized tensor (what the lowering replaces)."""
    kernels = collections.Counter(n.op_type for n in model.graph.node if n.op_type in INTEGER_KERNELS)
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    left = [n.name for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and dequantized & set(n.input)]
    return kernels, left


def test_the_written_cpu_graph_holds_the_integer_kernels_and_runs_as_lowered(block_graphs, tmp_path):
    _, int8, _, feeds = block_graphs
    target = tmp_path / cpu_file_name("int8.onnx")
    assert target.name == "int8.cpu.onnx"
    assert write_cpu_graph(int8, target) == {"seven_bit_weights": 4, "unsigned_activations": 7, "gelu": 2, "matmul_integer_to_float": 1, "nhwc_max_pools": 0}
    model = onnx.load(str(target))
    kernels, left = integer_kernel_report(model)
    assert kernels == {"QLinearConv": 3, "MatMulIntegerToFloat": 1} and left == []  # conv1, dw, conv2 and proj
    assert is_lowered(model) and cpu_model(target) == str(target)  # medkd loads it as it is
    plain = ort.InferenceSession(str(target))  # what a user without medkd runs
    lowered = cpu_session(int8, 1)
    for feed in feeds:
        np.testing.assert_allclose(plain.run(None, feed)[0], lowered.run(None, feed)[0], rtol=1e-5, atol=1e-6)


def test_only_quantized_graphs_are_written_lowered(block_graphs, tmp_path):
    fp32, _, _, _ = block_graphs
    with pytest.raises(MedkdError, match="holds no QuantizeLinear nodes"):
        write_cpu_graph(fp32, tmp_path / "fp32.cpu.onnx")
    assert not (tmp_path / "fp32.cpu.onnx").exists()


def _marked_8bit(int8: Path, target: Path) -> Path:
    stamp_metadata(int8, {WEIGHT_BITS_KEY: "8"}, target)
    return target


def test_vnni_is_read_from_the_cpu_flags():
    assert has_vnni({"avx2", "avx512f", "avx512_vnni"}) and has_vnni({"avx2", "avx_vnni"})
    assert not has_vnni({"avx2", "fma", "avx512f", "avx512bw"}) and not has_vnni(set())


def test_a_graph_marked_for_vnni_keeps_its_8bit_weights(block_graphs, tmp_path):
    _, int8, _, _ = block_graphs
    marked = onnx.load(str(_marked_8bit(int8, tmp_path / "int8-vnni.onnx")))
    assert cpu_weight_bits(marked) == 8 and cpu_weight_bits(onnx.load(str(int8))) == 7
    weights_before = {t.name for t in marked.graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) > 1}
    counts = lower_for_cpu(marked)
    assert counts["seven_bit_weights"] == 0 and counts["unsigned_activations"] == 7
    assert weights_before <= {t.name for t in marked.graph.initializer}  # no _7bit copies made
    assert not any(t.name.endswith("_7bit") for t in marked.graph.initializer)


def test_a_vnni_graph_is_written_for_the_vnni_runtime_and_refused_on_other_cpus(block_graphs, tmp_path, monkeypatch):
    _, int8, _, _ = block_graphs
    marked = _marked_8bit(int8, tmp_path / "int8-vnni.onnx")
    lowered = tmp_path / cpu_file_name(marked.name)
    write_cpu_graph(marked, lowered)
    assert lowered_runtime(onnx.load(str(lowered))) == VNNI_RUNTIME
    assert read_metadata(lowered)["medkd.lowered_for"] == VNNI_RUNTIME and is_lowered(onnx.load(str(lowered)))
    write_cpu_graph(int8, tmp_path / "portable.cpu.onnx")
    assert read_metadata(tmp_path / "portable.cpu.onnx")["medkd.lowered_for"] == CPU_RUNTIME
    monkeypatch.setattr(cpu_lowering, "cpuinfo_fields", lambda: {"flags": "sse4_2 avx2 fma"})
    for graph in (marked, lowered):
        with pytest.raises(BadInput, match="quantized for CPUs with VNNI"):
            cpu_model(graph)
    assert isinstance(cpu_model(int8), bytes)  # the portable graph is still lowered there


@pytest.mark.skipif(not has_vnni(), reason="8-bit weights are exact only on a CPU with VNNI")
def test_on_a_vnni_cpu_the_8bit_lowering_computes_the_qdq_graph(block_graphs, tmp_path):
    _, int8, _, feeds = block_graphs
    plain, lowered = _plain_session(int8), cpu_session(_marked_8bit(int8, tmp_path / "int8-vnni.onnx"), 1)
    for feed in feeds:
        expected, got = plain.run(None, feed)[0], lowered.run(None, feed)[0]
        assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 1e-3  # 7-bit weights: about 3.5 % here
