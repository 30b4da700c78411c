"""INT8 for CPU targets ships lowered for ONNX Runtime's integer kernels; GPU targets keep the Q/DQ graph."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from medkd.artifacts import hash_files, read_manifest, verify_files, write_manifest
from medkd.bundle.runtime import load_bundle_segmenter
from medkd.bundle.trust import TrustPolicy
from medkd.cli import run
from medkd.errors import BadInput
from medkd.runtime import cpu_lowering
from medkd.runtime.cpu_lowering import CPU_RUNTIME, VNNI_RUNTIME, has_vnni, is_lowered
from medkd.runtime.onnx_runtime import cpu_session
from tests.bundle.conftest import pack, read_members
from tests.bundle.test_pack import bundle_manifest
from tests.quantize.conftest import FEW, tiny_export  # noqa: F401 - the fixture
from tests.runtime.test_cpu_lowering import integer_kernel_report

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def int8_run(tiny_export, ct_manifest, tmp_path_factory):  # noqa: F811 - the imported fixture
    """RUN/export (FP32) and RUN/int8, as ``medkd quantize`` writes it by default."""
    root = tmp_path_factory.mktemp("cpu-bundle") / "run"
    shutil.copytree(tiny_export, root / "export")
    assert run(["quantize", "--model", str(root / "export"), "--data", str(ct_manifest), "--out", str(root / "int8"), "--graphs", "encoder", *FEW]) == 0
    return root


def test_quantize_writes_the_cpu_graph_beside_the_qdq_graph(int8_run):
    manifest = read_manifest(int8_run / "int8")
    entries = manifest.config["export"]["graphs"]
    assert entries["encoder"]["cpu_file"] == "encoder.cpu.onnx" and "cpu_file" not in entries["decoder"]  # the decoder stayed FP32
    assert {"encoder.onnx", "encoder.cpu.onnx"} <= set(manifest.files) and verify_files(int8_run / "int8", manifest) == []
    assert is_lowered(onnx.load(str(int8_run / "int8" / "encoder.cpu.onnx"))) and not is_lowered(onnx.load(str(int8_run / "int8" / "encoder.onnx")))


def _plain_ort_graph(data: bytes, tmp_path) -> onnx.ModelProto:
    """The graph plain ONNX Runtime (default options) runs for a file: its own optimized copy."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "as-run.onnx")
    ort.InferenceSession(data, options)
    return onnx.load(str(tmp_path / "as-run.onnx"))


def test_the_cpu_bundle_carries_the_lowered_int8_graph_and_plain_onnx_runtime_runs_integer_kernels(int8_run, tmp_path):
    manifest, members = bundle_manifest(pack(int8_run, tmp_path / "cpu.medkd", "x86-cpu"))
    variant = manifest.variant("onnx-int8")
    graphs = {g.name: (g.file, g.files, g.runtime) for g in variant.graphs}
    assert graphs["encoder"] == ("encoder.cpu.onnx", ["encoder.cpu.onnx"], CPU_RUNTIME)
    assert graphs["decoder"] == ("decoder.onnx", ["decoder.onnx"], "onnx")
    assert "variants/onnx-int8/encoder.onnx" not in members and "variants/onnx-int8/encoder.cpu.onnx" in manifest.files  # signed
    data = members["variants/onnx-int8/encoder.cpu.onnx"]
    quantized = read_manifest(int8_run / "int8").metrics["quantization"]["quantized_nodes"]["encoder"]  # nodes reading an int8 weight
    for graph in (onnx.load(io.BytesIO(data)), _plain_ort_graph(data, tmp_path)):
        kernels, left = integer_kernel_report(graph)
        assert left == [] and sum(kernels.values()) == quantized > 0, kernels
    expected = cpu_session(int8_run / "int8" / "encoder.onnx", 1)  # the Q/DQ graph, lowered in memory
    size = read_manifest(int8_run / "int8").config["export"]["preprocessing"]["input_size"]
    image = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    got = ort.InferenceSession(data).run(None, {"image": image})[0]
    np.testing.assert_allclose(got, expected.run(None, {"image": image})[0], rtol=1e-4, atol=1e-4)


def test_the_gpu_bundle_carries_the_qdq_graph(int8_run, tmp_path):
    manifest, members = bundle_manifest(pack(int8_run, tmp_path / "orin.medkd", "jetson-orin"))
    (encoder,) = [g for g in manifest.variant("onnx-int8").graphs if g.name == "encoder"]
    assert (encoder.file, encoder.runtime) == ("encoder.onnx", "onnx")
    assert "variants/onnx-int8/encoder.onnx" in members and not [m for m in members if m.endswith(".cpu.onnx")]


def test_an_int8_artifact_without_a_cpu_graph_is_lowered_when_packed_and_the_bundle_runs_it(int8_run, tmp_path):
    old = tmp_path / "run"
    shutil.copytree(int8_run, old)
    (old / "int8" / "encoder.cpu.onnx").unlink()  # as medkd quantize wrote it before CPU graphs
    manifest = read_manifest(old / "int8")
    del manifest.config["export"]["graphs"]["encoder"]["cpu_file"]
    manifest.files = hash_files(old / "int8", [name for name in manifest.files if name != "encoder.cpu.onnx"])
    write_manifest(old / "int8", manifest)
    bundle = pack(old, tmp_path / "old.medkd", "x86-cpu")
    bundled, members = bundle_manifest(bundle)
    (encoder,) = [g for g in bundled.variant("onnx-int8").graphs if g.name == "encoder"]
    assert (encoder.file, encoder.runtime) == ("encoder.cpu.onnx", CPU_RUNTIME)
    assert is_lowered(onnx.load(io.BytesIO(members["variants/onnx-int8/encoder.cpu.onnx"])))
    segmenter = load_bundle_segmenter(bundle, TrustPolicy(None, allow_unsigned=True), "onnx-int8")
    assert segmenter.sessions["encoder"].get_modelmeta().custom_metadata_map["medkd.lowered_for"] == CPU_RUNTIME
    report = tmp_path / "bench.json"  # the bundle's unpacked variant, timed: its layout names only the Q/DQ file
    assert run(["bench", "run", str(bundle), "--backend", "ort-int8", "--iters", "1", "--warmup", "0", "--allow-unsigned", "--out", str(report)]) == 0
    assert [e["file"] for e in json.loads(report.read_text())["entries"]] == ["encoder.cpu.onnx"]


@pytest.mark.skipif(not has_vnni(), reason="8-bit CPU weights are quantized on a CPU with VNNI only")
def test_a_vnni_int8_bundle_names_its_runtime_and_other_cpus_refuse_it(int8_run, ct_manifest, tmp_path, monkeypatch):
    root = tmp_path / "run"
    shutil.copytree(int8_run / "export", root / "export")
    assert run(["quantize", "--model", str(root / "export"), "--data", str(ct_manifest), "--out", str(root / "int8"), "--graphs", "encoder", "--cpu-weight-bits", "8", *FEW]) == 0
    bundle = pack(root, tmp_path / "vnni.medkd", "x86-cpu")
    manifest, _ = bundle_manifest(bundle)
    (encoder,) = [g for g in manifest.variant("onnx-int8").graphs if g.name == "encoder"]
    assert (encoder.file, encoder.runtime) == ("encoder.cpu.onnx", VNNI_RUNTIME)
    assert load_bundle_segmenter(bundle, TrustPolicy(None, allow_unsigned=True), "onnx-int8").sessions["encoder"]
    monkeypatch.setattr(cpu_lowering, "cpuinfo_fields", lambda: {"flags": "sse4_2 avx2 fma"})  # a CPU without VNNI
    with pytest.raises(BadInput, match="quantized for CPUs with VNNI"):
        load_bundle_segmenter(bundle, TrustPolicy(None, allow_unsigned=True), "onnx-int8")
