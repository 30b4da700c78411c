"""``medkd export check`` on planted problems, and the TensorRT command without TensorRT."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from medkd.export.check import check_onnx
from onnx import TensorProto, helper, numpy_helper

from medkd.cli import run


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _qdq_model(zero_point: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "scale"), numpy_helper.from_array(zero_point, "zero")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], name="q0"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"], name="dq0"),
    ]
    return _model(nodes, [x], [y], inits)


def _save(model, path):
    onnx.save(model, str(path))
    return path


def test_symmetric_int8_qdq_passes(tmp_path):
    assert check_onnx(_save(_qdq_model(np.array(0, np.int8)), tmp_path / "ok.onnx")) == []


def test_planted_asymmetric_qdq_is_caught(tmp_path, capsys):
    path = _save(_qdq_model(np.array(3, np.int8)), tmp_path / "asym.onnx")
    findings = check_onnx(path)
    assert [(f.rule, f.severity) for f in findings] == [("qdq", "error"), ("qdq", "error")]
    assert "asymmetric" in findings[0].message and "q0" in findings[0].message
    assert run(["export", "check", str(path)]) == 1
    assert "asymmetric" in capsys.readouterr().out


def test_uint8_zero_point_is_caught(tmp_path):
    findings = check_onnx(_save(_qdq_model(np.array(128, np.uint8)), tmp_path / "u8.onnx"))
    assert findings and all("int8 only" in f.message for f in findings)


def test_planted_unsupported_operator_and_foreign_domain_are_caught(tmp_path):
    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [2, 2])
    b = helper.make_tensor_value_info("b", TensorProto.UINT8, [2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [2, 2])
    z = helper.make_tensor_value_info("z", TensorProto.INT32, [2, 2])
    nodes = [
        helper.make_node("MatMulInteger", ["a", "b"], ["y"], name="mmi"),
        helper.make_node("FusedGemm", ["y"], ["z"], name="fused", domain="com.microsoft"),
    ]
    model = _model(nodes, [a, b], [y, z])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    findings = check_onnx(_save(model, tmp_path / "ops.onnx"))
    assert [(f.rule, "mmi" in f.message or "fused" in f.message) for f in findings] == [("operator", True), ("operator", True)]


def test_opset_beyond_the_parser_is_caught_per_version(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    path = _save(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=21), tmp_path / "o21.onnx")
    assert [f.rule for f in check_onnx(path, "10.3")] == ["opset"]
    assert check_onnx(path, "10.8") == []


@pytest.mark.data
def test_sam_decoder_needs_a_shape_profile_and_decoder_trt_passes(sam_export, capsys):
    findings = check_onnx(sam_export / "decoder.onnx", "10.3")
    rules = {(f.rule, f.severity) for f in findings}
    assert ("shape-input", "error") in rules and any("orig_im_size" in f.message for f in findings)
    assert ("profile", "error") in rules  # dynamic prompt / point axes, no profile for that graph
    assert run(["export", "check", str(sam_export / "decoder_trt.onnx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\ndecoder_trt")[0]) == []
    assert run(["export", "check", str(sam_export / "encoder.onnx")]) == 0


@pytest.mark.data
def test_dynamic_axis_without_profile_is_caught(sam_export, tmp_path, capsys):
    copy = tmp_path / "encoder.onnx"
    copy.write_bytes((sam_export / "encoder.onnx").read_bytes())
    assert run(["export", "check", str(copy)]) == 1
    assert "dynamic axes [0] and no optimization profile" in capsys.readouterr().out
    assert run(["export", "check", str(copy), "--profile", "image:1x3x256x256,1x3x256x256,2x3x256x256"]) == 0


@pytest.mark.data
def test_print_trtexec_lists_one_command_per_engine(sam_export, capsys):
    assert run(["export", "tensorrt", str(sam_export), "--precision", "fp16", "--timing-cache", "t.cache", "--print-trtexec"]) == 0
    encoder, decoder = capsys.readouterr().out.strip().splitlines()
    assert encoder.startswith("trtexec --onnx=") and "encoder.onnx" in encoder and "encoder.fp16.plan" in encoder
    assert "--minShapes=image:1x3x256x256" in encoder and "--maxShapes=image:4x3x256x256" in encoder
    assert "--fp16" in encoder and "--precisionConstraints=obey" in encoder and "LayerNormalization:fp32" in encoder
    assert "--timingCacheFile=t.cache" in encoder and "--memPoolSize=workspace:2048M" in encoder
    assert "--optShapes=point_coords:1x4x2,point_labels:1x4" in decoder and "--maxShapes=point_coords:16x4x2" in decoder
    assert "decoder_trt.onnx" in decoder


@pytest.mark.data
def test_int8_without_qdq_is_bad_input(sam_export, capsys):
    assert run(["export", "tensorrt", str(sam_export), "--precision", "int8", "--print-trtexec"]) == 2
    assert "Q/DQ" in capsys.readouterr().err


@pytest.mark.data
def test_tensorrt_build_without_tensorrt_exits_2(sam_export, capsys):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert run(["export", "tensorrt", str(sam_export), "--precision", "fp32"]) == 2
        err = capsys.readouterr().err
        assert "TensorRT is not installed" in err and "--print-trtexec" in err
    else:
        pytest.skip("TensorRT is installed here: the build itself is tested in test_export_tensorrt.py")
