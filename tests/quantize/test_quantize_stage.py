"""medkd quantize on a tiny SAM export and real CT slices: Q/DQ rule, per-channel weights, gate, eval, caches."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import onnx
import pytest
from medkd.export.check import check_onnx
from medkd.runtime import cpu_lowering
from medkd.runtime.layout import graph_metadata, read_layout, read_metadata
from medkd.runtime.onnx_runtime import cpu_session
from medkd.quantize.calibration import activation_ranges, amax
from medkd.quantize.nodes import block_of, quantizable_nodes
from medkd.quantize.recipe import Recipe
from medkd.quantize.symmetry import qdq_problems
from medkd.quantize.trt_cache import read_calibration_cache
from onnx import numpy_helper

from medkd.artifacts import read_manifest, sha256_file, verify_files
from medkd.cli import run
from tests.quantize.conftest import FEW

pytestmark = pytest.mark.data
GRAPHS = ("encoder.onnx", "decoder.onnx", "decoder_trt.onnx")


def _weight_scales(model: onnx.ModelProto) -> list[np.ndarray]:
    """Scales of the DequantizeLinear nodes whose input is an int8 weight initializer."""
    initializers = {t.name: t for t in model.graph.initializer}
    return [
        numpy_helper.to_array(initializers[node.input[1]])
        for node in model.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers and initializers[node.input[0]].data_type == onnx.TensorProto.INT8
    ]


def test_every_graph_is_symmetric_int8_qdq_with_per_channel_weights(tiny_quant):
    manifest = read_manifest(tiny_quant, "export")
    assert set(GRAPHS) <= set(manifest.files) and verify_files(tiny_quant, manifest) == []
    for name in GRAPHS:
        model = onnx.load(str(tiny_quant / name))
        assert qdq_problems(tiny_quant / name) == []
        scales = _weight_scales(model)
        assert scales and all(s.ndim == 1 and s.size > 1 for s in scales)  # one scale per output channel
        assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
        producers = {o: n.op_type for n in model.graph.node for o in n.output}
        float_ops = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
        assert float_ops and all(producers.get(n.input[0]) != "DequantizeLinear" for n in float_ops)  # they run in float
    errors = [str(f) for f in check_onnx(tiny_quant / "encoder.onnx", "10.3", read_layout(tiny_quant)["profiles"]["encoder"]) if f.severity == "error"]
    assert errors == []


def test_report_holds_the_gate_and_records_what_was_measured(tiny_quant):
    report = read_manifest(tiny_quant).metrics["quantization"]
    for split in ("val", "test"):
        accuracy = report["accuracy"][split]
        assert accuracy["objects"] == 3 and 0.0 <= accuracy["int8"]["dsc"] <= 1.0
        assert accuracy["dsc_drop"] == pytest.approx(accuracy["fp32"]["dsc"] - accuracy["int8"]["dsc"])
    assert report["accuracy"]["val"]["dsc_drop"] <= 0.01
    gate = report["gate"]
    assert gate["steps"][gate["chosen_step"]]["dsc_drop"] <= 0.01
    assert all(0.0 <= step["agreement_with_fp32"] <= 1.0 for step in gate["steps"])
    assert 0.0 < report["output_rel_error"]["test"]["encoder"] < 0.5
    for graph, sizes in report["size_bytes"].items():
        assert sizes["int8"] < sizes["fp32"], graph
    assert report["latency"]["encoder"]["fp32"]["p50_ms"] > 0 and report["latency"]["encoder"]["speedup_p50"] > 0
    sensitivity = report["sensitivity"]
    assert {s["graph"] for s in sensitivity} == {"encoder", "decoder"}
    ranking = [(s["mask_change"], s["output_error"]) for s in sensitivity]
    assert ranking == sorted(ranking, key=lambda t: (round(t[0], 6), t[1]), reverse=True) and all(0.0 <= m <= 1.0 for m, _ in ranking)
    floats = report["float_by_recipe"]["encoder"]
    assert floats["LayerNormalization (never quantized)"] > 0 and floats["product of two activations (attention)"] == 2  # q @ k, attn @ v


def test_quantized_artifact_runs_in_eval_like_the_export(tiny_quant, ct_manifest, tmp_path):
    out = tmp_path / "metrics.json"
    assert run(["eval", "--model", str(tiny_quant), "--data", str(ct_manifest), "--split", "val", "--limit", "2", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]["overall"]
    assert summary["dsc"]["n"] == 2


def test_the_int8_export_keeps_the_preprocessing_spec_in_its_layout_and_every_onnx_file(tiny_quant, tiny_export):
    layout, source = read_layout(tiny_quant), read_layout(tiny_export)
    assert layout["preprocessing"] == source["preprocessing"] and layout["preprocessing"]["version"] == 1
    calibration = read_manifest(tiny_quant).metrics["quantization"]["calibration"]
    assert calibration["crop"] == source["preprocessing"]["crop"] == "none"  # --crop not given: the export's own
    for graph, entry in layout["graphs"].items():
        metadata = read_metadata(tiny_quant / entry["file"])  # ONNX Runtime's quantizer adds its own keys
        exported = read_metadata(tiny_export / source["graphs"][graph]["file"])
        assert {k: metadata[k] for k in exported} == exported == graph_metadata(source)
        assert json.loads(metadata["medkd.preprocessing"]) == source["preprocessing"]


def test_calibration_cache_holds_the_measured_ranges(tiny_quant, tiny_export):
    header, scales = read_calibration_cache(tiny_quant / "encoder.calib")
    assert header == "TRT-100300-EntropyCalibration2"
    assert "image" in scales and all(s > 0 for s in scales.values())
    # CT air is pixel 0: (0 - 123.675) / 58.395 = -2.118; nothing exceeds (255 - 103.53) / 57.375 = 2.640
    assert 2.118 <= scales["image"] * 127 <= 2.641
    decoder_header, decoder_scales = read_calibration_cache(tiny_quant / "decoder_trt.calib")
    tensors = {o for n in onnx.load(str(tiny_export / "decoder_trt.onnx")).graph.node for o in n.output}
    assert decoder_header == header and len(decoder_scales) > 10 and set(decoder_scales) <= tensors | {"point_coords"}


def _reads_dequantized_weight(model: onnx.ModelProto) -> set[str]:
    weights = {t.name for t in model.graph.initializer}
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    return {n.name for n in model.graph.node if dequantized & set(n.input)}


def test_keep_float_and_unfusable_nodes_stay_float(tiny_export, ct_manifest, tmp_path):
    out = tmp_path / "quant"
    block = "/encoder/blocks.0"
    assert run(["quantize", str(tiny_export), "--calib", str(ct_manifest), "--out", str(out), "--keep-float", block, "--no-trt-cache", *FEW]) == 0
    encoder = onnx.load(str(out / "encoder.onnx"))
    in_block = {n.name for n in encoder.graph.node if n.op_type == "MatMul" and block_of(n.name) == block}
    assert in_block and not in_block & _reads_dequantized_weight(encoder)
    report = read_manifest(out).metrics["quantization"]
    assert {"graph": "encoder", "block": block, "reason": "kept in float by request (--keep-float)"} in report["kept_in_float"]
    unfused = {e["node"] for e in report["kept_in_float"] if e["graph"] == "decoder" and "node" in e}
    quantized = _reads_dequantized_weight(onnx.load(str(out / "decoder.onnx")))
    assert unfused and quantized and not unfused & quantized  # ORT cannot fuse some decoder nodes: they stay float
    assert report["quantized_nodes"]["decoder"] == len(quantized)
    assert not (out / "encoder.calib").exists()


def test_nncf_backend_with_smoothquant_gives_symmetric_graphs(tiny_export, ct_manifest, tmp_path):
    out = tmp_path / "quant"
    args = ["--backend", "nncf", "--method", "percentile", "--smooth-quant", "0.5", "--graphs", "encoder", "--no-trt-cache"]
    assert run(["quantize", str(tiny_export), "--calib", str(ct_manifest), "--out", str(out), *args, *FEW]) == 0
    assert qdq_problems(out / "encoder.onnx") == [] and _reads_dequantized_weight(onnx.load(str(out / "encoder.onnx")))
    for name in ("decoder.onnx", "decoder_trt.onnx"):  # not selected: the FP32 graphs
        assert sha256_file(out / name) == sha256_file(tiny_export / name)
    session = cpu_session(out / "encoder.onnx")
    embedding = session.run(None, {"image": np.zeros((1, 3, 256, 256), np.float32)})[0]
    assert embedding.shape == (1, 256, 16, 16) and np.isfinite(embedding).all()


def test_fp16_keeps_norms_softmax_and_attention_bias_in_fp32(tiny_export, ct_manifest, tmp_path):
    out = tmp_path / "fp16"
    assert run(["quantize", str(tiny_export), "--calib", str(ct_manifest), "--out", str(out), "--precision", "fp16", *FEW]) == 0
    model = onnx.shape_inference.infer_shapes(onnx.load(str(out / "encoder.onnx")))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    initializers = {t.name: t.data_type for t in model.graph.initializer}
    kinds = {n.op_type for n in model.graph.node}
    assert "Cast" in kinds
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert types.get(node.input[0], initializers.get(node.input[0])) == onnx.TensorProto.FLOAT, node.name
    assert types["image"] == types["image_embeddings"] == onnx.TensorProto.FLOAT
    report = read_manifest(out).metrics["quantization"]
    assert report["precision"] == "fp16" and report["output_rel_error"]["test"]["encoder"] < 1e-2
    kept = report["kept_in_fp32"]["encoder"]
    assert kept["op_types"]["LayerNormalization"] > 0 and len(kept["attention_bias_adds"]) == 2  # attn + rel_h + rel_w
    adds = [n for n in model.graph.node if n.name in kept["attention_bias_adds"]]
    assert adds and all(types.get(i, initializers.get(i)) == onnx.TensorProto.FLOAT for n in adds for i in n.input)
    assert not (out / "encoder.calib").exists()


def test_asymmetric_or_quantized_input_is_refused(tiny_export, ct_manifest, tmp_path, capsys):
    from medkd.quantize.calibration import FeedReader
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    planted = tmp_path / "export"
    shutil.copytree(tiny_export, planted)
    feeds = [{"image": np.random.default_rng(0).standard_normal((1, 3, 256, 256)).astype(np.float32)}]
    quantize_static(tiny_export / "encoder.onnx", planted / "encoder.onnx", FeedReader(feeds), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    code = run(["quantize", str(planted), "--calib", str(ct_manifest), "--out", str(tmp_path / "q"), *FEW])
    assert code == 2 and "breaks the symmetric int8 Q/DQ rule" in capsys.readouterr().err
    assert not (tmp_path / "q" / "manifest.json").exists()
    shutil.copy(tiny_export / "encoder.onnx", planted / "encoder.onnx")
    nodes = quantizable_nodes(onnx.load(str(planted / "encoder.onnx")), Recipe())
    ranges = amax(activation_ranges(planted / "encoder.onnx", feeds, nodes, "minmax"))
    assert nodes and ranges and min(ranges.values()) > 0


def test_bad_options_are_bad_input(tiny_export, ct_manifest, tmp_path, capsys, monkeypatch):
    cases = [(["--method", "kl"], "--method"), (["--precision", "int4"], "--precision"), (["--max-dsc-drop", "5"], "--max-dsc-drop"), (["--graphs", "unet"], "--graphs")]
    cases.append((["--cpu-weight-bits", "6"], "--cpu-weight-bits"))
    if importlib.util.find_spec("neural_compressor") is None:
        cases.append((["--smooth-quant", "0.5"], "neural-compressor"))
    for extra, phrase in cases:
        assert run(["quantize", str(tiny_export), "--calib", str(ct_manifest), "--out", str(tmp_path / "q"), *extra]) == 2
        assert phrase in capsys.readouterr().err
    monkeypatch.setattr(cpu_lowering, "cpuinfo_fields", lambda: {"flags": "sse4_2 avx2 fma"})  # a CPU without VNNI
    assert run(["quantize", str(tiny_export), "--calib", str(ct_manifest), "--out", str(tmp_path / "q"), "--cpu-weight-bits", "8"]) == 2
    assert "needs a CPU with VNNI" in capsys.readouterr().err and not (tmp_path / "q" / "manifest.json").exists()


@pytest.mark.skipif(not cpu_lowering.has_vnni(), reason="8-bit CPU weights are measured on a CPU with VNNI only")
def test_8bit_cpu_weights_are_marked_in_the_graph_and_its_cpu_file(tiny_export, ct_manifest, tmp_path):
    out = tmp_path / "q-vnni"
    assert run(["quantize", str(tiny_export), "--calib", str(ct_manifest), "--out", str(out), "--graphs", "encoder", "--cpu-weight-bits", "8", "--no-trt-cache", *FEW]) == 0
    assert read_metadata(out / "encoder.onnx")[cpu_lowering.WEIGHT_BITS_KEY] == "8"
    assert read_metadata(out / "encoder.cpu.onnx")[cpu_lowering.LOWERED_KEY] == cpu_lowering.VNNI_RUNTIME
    lowered = onnx.load(str(out / "encoder.cpu.onnx"))
    weights = [numpy_helper.to_array(t) for t in lowered.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1]
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) == 127  # 7-bit: 64 at most
    assert read_manifest(out).metrics["quantization"]["recipe"]["cpu_weight_bits"] == 8


def test_tensorrt_int8_lines_come_straight_from_the_quantized_artifact(tiny_quant, capsys):
    assert run(["export", "tensorrt", str(tiny_quant), "--precision", "int8", "--print-trtexec"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("--stronglyTyped" in line for line in lines)  # precision from the Q/DQ graphs
    assert "encoder.onnx" in lines[0] and "decoder_trt.onnx" in lines[1]
