"""The symmetric int8 Q/DQ rule on planted graphs, and the blocks nodes are grouped into."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from medkd.quantize.nodes import block_of, calibrated_nodes, float_by_recipe, movement_chains, quantizable_nodes
from medkd.quantize.recipe import Recipe
from medkd.quantize.symmetry import qdq_problems, require_symmetric
from onnx import TensorProto, helper, numpy_helper

from medkd.errors import BadInput


def _qdq_model(path, zero_point: np.ndarray) -> None:
    """x -> QuantizeLinear -> DequantizeLinear -> y with the given zero point."""
    initializers = [numpy_helper.from_array(np.array(0.05, np.float32), "scale"), numpy_helper.from_array(zero_point, "zero")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], name="q"), helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"], name="dq")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_symmetric_int8_passes(tmp_path):
    _qdq_model(tmp_path / "ok.onnx", np.array(0, np.int8))
    assert qdq_problems(tmp_path / "ok.onnx") == []
    require_symmetric(tmp_path / "ok.onnx")


@pytest.mark.parametrize(("zero", "phrase"), [(np.array(3, np.int8), "asymmetric"), (np.array(128, np.uint8), "uint8"), (np.array(0, np.uint8), "uint8")])
def test_planted_asymmetric_or_unsigned_qdq_is_refused(tmp_path, zero, phrase):
    _qdq_model(tmp_path / "bad.onnx", zero)
    problems = qdq_problems(tmp_path / "bad.onnx")
    assert len(problems) == 2 and all(phrase in p for p in problems)  # the Q and the DQ node
    with pytest.raises(BadInput, match="breaks the symmetric int8 Q/DQ rule"):
        require_symmetric(tmp_path / "bad.onnx")


@pytest.mark.parametrize(
    ("name", "block"),
    [
        ("/encoder/layers.1/blocks.0/attn/qkv/MatMul", "/encoder/layers.1/blocks.0"),
        ("/encoder/layers.0/downsample/conv1/c/Conv", "/encoder/layers.0"),
        ("/encoder/blocks.3/mlp/lin1/MatMul", "/encoder/blocks.3"),
        ("/encoder/patch_embed/proj/Conv", "/encoder/patch_embed"),
        ("/transformer/layers.1/cross_attn_token_to_image/q_proj/MatMul", "/transformer/layers.1"),
        ("/output_hypernetworks_mlps.2/layers.0/Gemm", "/output_hypernetworks_mlps.2"),
        ("/MatMul_1", "/"),
    ],
)
def test_blocks_follow_module_paths(name, block):
    assert block_of(name) == block


def test_only_weight_products_and_ungrouped_convs_are_candidates():
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    kernel = numpy_helper.from_array(np.ones((4, 1, 1, 1), np.float32), "k")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="/b.0/linear/MatMul"),
        helper.make_node("MatMul", ["a", "x"], ["b"], name="/b.0/attn/MatMul"),
        helper.make_node("Conv", ["img", "k"], ["c"], name="/b.0/dw/Conv", group=4),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4]), helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 4, 2, 2])], [], [weight, kernel])
    model = helper.make_model(graph)
    assert quantizable_nodes(model, Recipe()) == ["/b.0/linear/MatMul"]
    assert quantizable_nodes(model, Recipe(attention_matmuls=True, op_types=("MatMul", "Conv"))) == ["/b.0/linear/MatMul", "/b.0/attn/MatMul"]


def _conv_graph() -> onnx.ModelProto:
    """image -> stem Conv -> dense Conv -> Relu -> depthwise Conv -> Transpose -> Reshape -> MatMul, and a
    depthwise Conv on a transposed tensor beside it (TinyViT's local convolution)."""
    inits = [
        numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "stem"),
        numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "dense"),
        numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "dw"),
        numpy_helper.from_array(np.array([4, 4], np.int64), "shape"),
        numpy_helper.from_array(np.ones((4, 4), np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Conv", ["img", "stem"], ["s"], name="/stem/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["s", "dense"], ["d"], name="/b.0/conv1/Conv"),
        helper.make_node("Relu", ["d"], ["r"], name="/b.0/act/Relu"),
        helper.make_node("Conv", ["r", "dw"], ["c"], name="/b.0/conv2/Conv", group=4, pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c"], ["t"], name="/b.0/Transpose", perm=[0, 1, 3, 2]),
        helper.make_node("Reshape", ["t", "shape"], ["flat"], name="/b.0/Reshape"),
        helper.make_node("MatMul", ["flat", "w"], ["y"], name="/b.0/proj/MatMul"),
        helper.make_node("Transpose", ["s"], ["st"], name="/b.1/Transpose", perm=[0, 1, 3, 2]),
        helper.make_node("Conv", ["st", "dw"], ["z"], name="/b.1/local_conv/Conv", group=4, pads=[1, 1, 1, 1]),
    ]
    inputs = [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 2, 2])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("y", "z")]
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits))


def test_convolution_rules_stem_blocks_and_local_convolutions():
    model = _conv_graph()
    assert quantizable_nodes(model, Recipe()) == ["/b.0/conv1/Conv", "/b.0/conv2/Conv", "/b.0/proj/MatMul"]
    assert float_by_recipe(model, Recipe()) == {
        "Conv on the model's input (the image stem)": 1,
        "grouped (depthwise) Conv outside a convolution block": 1,
    }


def test_data_movement_in_front_of_a_quantized_node_moves_with_it():
    model = _conv_graph()
    chains = movement_chains(model, quantizable_nodes(model, Recipe()))
    assert chains == {"/b.0/conv1/Conv": [], "/b.0/conv2/Conv": [], "/b.0/proj/MatMul": ["/b.0/Reshape", "/b.0/Transpose"]}
    assert calibrated_nodes(model, Recipe())[-2:] == ["/b.0/Reshape", "/b.0/Transpose"]


def test_recipe_refuses_bad_settings():
    for kwargs in ({"backend": "tflite"}, {"method": "kl"}, {"op_types": ("Softmax",)}, {"percentile": 50.0}, {"smooth_quant": 1.5}):
        with pytest.raises(BadInput):
            Recipe(**kwargs)
