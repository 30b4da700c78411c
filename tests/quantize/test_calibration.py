"""Calibration ranges by method on small graphs with known inputs, and the spread of objects."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from medkd.quantize.calibration import activation_ranges, amax, spread_rows


@pytest.fixture
def matmul_graph(tmp_path):
    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="/b.0/MatMul")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1000, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1000, 4])], [weight])
    path = tmp_path / "matmul.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _feeds() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1000, 4)).astype(np.float32)} for _ in range(3)]
    feeds[1]["x"][0, 0] = -40.0  # one outlier
    return feeds


def test_minmax_covers_every_value_over_all_feeds(matmul_graph):
    ranges = amax(activation_ranges(matmul_graph, _feeds(), ["/b.0/MatMul"], "minmax"))
    assert ranges["x"] == pytest.approx(40.0) and ranges["y"] == pytest.approx(40.0)


def test_mean_minmax_averages_each_feeds_extremes(matmul_graph):
    """One outlier image pulls the range a third of the way, not all the way."""
    feeds = _feeds()
    lows, highs = np.mean([f["x"].min() for f in feeds]), np.mean([f["x"].max() for f in feeds])
    ranges = amax(activation_ranges(matmul_graph, feeds, ["/b.0/MatMul"], "mean-minmax"))
    assert ranges["x"] == pytest.approx(max(abs(lows), abs(highs)), rel=1e-6)
    assert 10.0 < ranges["x"] < 20.0


def test_percentile_and_entropy_clip_the_outlier(matmul_graph):
    percentile = amax(activation_ranges(matmul_graph, _feeds(), ["/b.0/MatMul"], "percentile", 99.9))["x"]
    entropy = amax(activation_ranges(matmul_graph, _feeds(), ["/b.0/MatMul"], "entropy"))["x"]
    assert 2.5 < percentile < 10.0  # 99.9th percentile of |N(0, 1)| is about 3.3
    assert 1.0 < entropy < 40.0


def test_only_the_given_nodes_are_calibrated(tmp_path):
    """An attention-like product of two activations that the recipe leaves in float gets no range."""
    from medkd.quantize.nodes import calibrated_nodes, quantizable_nodes
    from medkd.quantize.recipe import Recipe

    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["q"], name="/b.0/proj/MatMul"),
        helper.make_node("Transpose", ["q"], ["k"], name="/b.0/Transpose", perm=[1, 0]),
        helper.make_node("MatMul", ["q", "k"], ["scores"], name="/b.0/attn/MatMul"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 4])], [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [8, 8])], [weight])
    path = tmp_path / "attention.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    feeds = [{"x": np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)}]
    candidates = quantizable_nodes(onnx.load(str(path)), Recipe())
    assert candidates == calibrated_nodes(onnx.load(str(path)), Recipe()) == ["/b.0/proj/MatMul"]
    assert calibrated_nodes(onnx.load(str(path)), Recipe(attention_matmuls=True)) == ["/b.0/proj/MatMul", "/b.0/attn/MatMul"]
    assert set(activation_ranges(path, feeds, candidates, "minmax")) == {"x", "q"}
    assert set(activation_ranges(path, feeds, [n.name for n in nodes], "minmax")) == {"x", "q", "k", "scores"}


def test_objects_spread_over_datasets_then_images(ct_manifest):
    from medkd.data import load_manifest

    manifest = load_manifest(ct_manifest)
    rows = spread_rows(manifest, 6, "val")
    images = [r.image_key for r in rows]
    first_pass = len({r.image_key for r in manifest.select("val")})
    assert len(rows) == 6 and len(set(images[:first_pass])) == first_pass  # every image once before any twice
