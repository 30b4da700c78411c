"""benchmarks/int8_error_sources.py's measurements on small graphs with known answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("int8_error_sources", ROOT / "benchmarks" / "int8_error_sources.py")
sources = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sources)


def _save(tmp_path: Path, nodes: list[onnx.NodeProto], constants: list[onnx.TensorProto], name: str) -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096])], [helper.make_tensor_value_info(sources.OUTPUT, TensorProto.FLOAT, [1, 4096])], constants
    )
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _feeds() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((1, 4096)).astype(np.float32)} for _ in range(3)]


def test_noise_through_a_linear_graph_is_not_amplified(tmp_path):
    """y = 3 x + 0 with noise n added to h = 3 x: the output's relative error is the noise's."""
    constants = [numpy_helper.from_array(np.float32(3.0), "w"), numpy_helper.from_array(np.float32(0.0), "b")]
    nodes = [helper.make_node("Mul", ["x", "w"], ["h"], name="scale"), helper.make_node("Add", ["h", "b"], [sources.OUTPUT], name="shift")]
    path = _save(tmp_path, nodes, constants, "linear")
    feeds = _feeds()
    reference = [3.0 * f["x"] for f in feeds]
    rows = sources.noise_amplification(path, "h", [0.0, 0.05, 0.2], feeds, reference)
    assert [r["noise_rel"] for r in rows] == [0.0, 0.05, 0.2]
    assert rows[0]["embedding_rel_error"] == pytest.approx(0.0, abs=1e-7)
    assert rows[1]["embedding_rel_error"] == pytest.approx(0.05, rel=0.05)
    assert rows[2]["embedding_rel_error"] == pytest.approx(0.2, rel=0.05)


def test_activation_rounding_reads_the_variants_scales(tmp_path):
    """A Q/DQ pair of scale s on values uniform in [-1, 1] (RMS 1 / sqrt 3, inside the range): rounding
    error s / sqrt(12) relative to that, s / 2; a scale stretched tenfold makes it ten times larger."""
    fp32 = _save(tmp_path, [helper.make_node("Identity", ["x"], [sources.OUTPUT], name="copy")], [], "fp32")
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.uniform(-1.0, 1.0, (1, 4096)).astype(np.float32)} for _ in range(3)]
    for scale in (0.02, 0.2):
        constants = [numpy_helper.from_array(np.float32(scale), "s"), numpy_helper.from_array(np.int8(0), "z")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], [sources.OUTPUT])]
        variant = onnx.load(str(_save(tmp_path, nodes, constants, f"qdq-{scale}")))
        (row,) = sources.activation_rounding(variant, fp32, feeds)
        assert row["tensor"] == "x" and row["calibrated_amax"] == pytest.approx(127 * scale)
        assert row["rounding_rel_error"] == pytest.approx(scale / 2, rel=0.05)
        got = [o[0] for o in sources.outputs(sources.session(variant, False), feeds, [sources.OUTPUT])]
        assert sources.relative_error(got, [f["x"] for f in feeds]) == pytest.approx(row["rounding_rel_error"], rel=0.02)


@pytest.mark.parametrize(
    ("node", "stage"),
    [
        ("/encoder/layers.0/blocks.1/conv2/c/Conv", "/encoder/layers.0"),
        ("/encoder/layers.12/downsample/conv1/c/Conv", "/encoder/layers.12"),
        ("/encoder/patch_embed/seq/seq.2/c/Conv", "/encoder/patch_embed"),
        ("/encoder/neck/neck.0/Conv", "/encoder/neck"),
        ("reorder_token_17", "other (layout reorders, unnamed nodes)"),
    ],
)
def test_stage_of_a_node(node, stage):
    assert sources.stage_of(node) == stage


def test_time_shares_add_up_over_the_stages(tmp_path):
    constants = [numpy_helper.from_array(np.float32(3.0), "w")]
    nodes = [helper.make_node("Mul", ["x", "w"], ["h"], name="/encoder/layers.0/scale"), helper.make_node("Relu", ["h"], [sources.OUTPUT], name="/encoder/neck/relu")]
    shares = sources.time_shares(_save(tmp_path, nodes, constants, "staged"), _feeds()[0], runs=2)
    assert set(shares) == {"/encoder/layers.0", "/encoder/neck"}
    assert sum(shares.values()) == pytest.approx(1.0)
