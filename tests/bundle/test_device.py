"""Device compatibility: engines built for another TensorRT version or GPU are reported incompatible."""

from __future__ import annotations

import shutil
from dataclasses import replace

import onnx
import pytest
from onnx import TensorProto, helper

from medkd.bundle import DeviceProfile, default_variant, local_device, trust_policy, verify_bundle
from medkd.bundle.compatibility import engine_check, onnx_check, version_tuple
from medkd.bundle.schema import EngineSpec, GraphSpec, Variant
from medkd.cli import run
from tests.bundle.conftest import add_engines, failures, pack, verify_json

ORIN = DeviceProfile("aarch64", "1.20.0", "10.3.0.30", "12.6", "8.7", "Orin")
ENGINE = EngineSpec("encoder", "encoder.fp16.plan", "fp16", "10.3.0.30", "12.6", "8.7", "Orin", "6.2", False, "none")
VARIANT = Variant("tensorrt-fp16", "tensorrt", "fp16", "variants/tensorrt-fp16", "engines", "engines-1", [], [ENGINE])


@pytest.mark.parametrize(
    ("engine", "device", "status", "message"),
    [
        (ENGINE, ORIN, "pass", "TensorRT 10.3.0.30 on compute capability 8.7 fits"),
        (ENGINE, replace(ORIN, tensorrt="10.7.0"), "fail", "built with TensorRT 10.3.0.30, this device has TensorRT 10.7.0 (runs only on the TensorRT version that built it)"),
        (ENGINE, replace(ORIN, compute_capability="9.0", gpu="NVIDIA H100"), "fail", "built for compute capability 8.7, this GPU (NVIDIA H100) has 9.0"),
        (ENGINE, replace(ORIN, tensorrt=None), "skip", "not checkable here (TensorRT is not installed); needs TensorRT 10.3.0.30 and compute capability 8.7"),
        (ENGINE, replace(ORIN, tensorrt=None, compute_capability=None), "skip", "(TensorRT is not installed, no CUDA GPU)"),
        (replace(ENGINE, version_compatible=True), replace(ORIN, tensorrt="10.7.0"), "pass", "fits"),
        (replace(ENGINE, version_compatible=True), replace(ORIN, tensorrt="10.1.0"), "fail", "runs the same major version or later"),
        (replace(ENGINE, hardware_compatibility="ampere+"), replace(ORIN, compute_capability="9.0"), "pass", "fits"),
        (replace(ENGINE, hardware_compatibility="ampere+"), replace(ORIN, compute_capability="7.2"), "fail", "this GPU (Orin) has 7.2"),
    ],
)
def test_engine_rules(engine, device, status, message):
    check = engine_check(VARIANT, engine, device)
    assert check.status == status and message in check.message
    assert check.name == "device tensorrt-fp16/encoder.fp16.plan"


def test_version_tuples():
    assert version_tuple("10.3.0.30") == (10, 3, 0) and version_tuple("8.6") == (8, 6, 0) and version_tuple("9.0", 2) == (9, 0)


def test_an_onnx_graph_this_onnx_runtime_cannot_load_fails(tmp_path):
    directory = tmp_path / "variants" / "onnx-fp32"
    directory.mkdir(parents=True)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 99)]), str(directory / "future.onnx"))
    spec = GraphSpec("g", "future.onnx", ["future.onnx"], 99, [], [])
    variant = Variant("onnx-fp32", "onnx", "fp32", "variants/onnx-fp32", "export", "export-1", [spec], onnxruntime="99.0")
    check = onnx_check(variant, spec, tmp_path, local_device())
    assert check.status == "fail" and check.message.startswith(f"ONNX Runtime {local_device().onnxruntime} cannot load it (opset 99): ")


@pytest.fixture(scope="module")
def orin_bundle(unet_run, tmp_path_factory):
    """The U-Net run with made-up Orin engines (TensorRT 10.3.0, sm_87), packed for jetson-orin."""
    root = tmp_path_factory.mktemp("orin") / "run"
    shutil.copytree(unet_run, root)
    add_engines(root / "export", root / "export" / "tensorrt-fp16")
    return pack(root, root.parent / "orin.medkd", "jetson-orin")


@pytest.mark.data
@pytest.mark.parametrize(
    ("device", "message"),
    [
        (replace(ORIN, compute_capability="9.0", gpu="NVIDIA H100"), "incompatible: built for compute capability 8.7, this GPU (NVIDIA H100) has 9.0"),
        (replace(ORIN, tensorrt="8.6.2"), "incompatible: built with TensorRT 10.3.0, this device has TensorRT 8.6.2"),
    ],
)
def test_a_bundle_with_engines_for_another_device_is_incompatible(orin_bundle, device, message):
    verification = verify_bundle(orin_bundle, trust_policy(allow_unsigned=True), device=replace(device, onnxruntime=local_device().onnxruntime))
    assert [f"{c.name}: {c.message}".split(" (runs")[0] for c in verification.failed] == [f"device tensorrt-fp16/unet.fp16.plan: {message}"]
    assert default_variant(verification.manifest, device).name == "onnx-fp32"
    assert default_variant(verification.manifest, replace(ORIN, onnxruntime="1.20.0")).name == "tensorrt-fp16"


@pytest.mark.data
def test_engines_are_not_checkable_on_a_machine_without_tensorrt(orin_bundle, capsys):
    if local_device().tensorrt is not None:
        pytest.skip("TensorRT is installed here")
    code, report = verify_json(orin_bundle, "--allow-unsigned", capsys=capsys)
    engine = next(c for c in report["checks"] if c["name"] == "device tensorrt-fp16/unet.fp16.plan")
    assert code == 0 and failures(report) == [] and engine["status"] == "skip"
    assert engine["message"].startswith("not checkable here (TensorRT is not installed")
    assert run(["verify", str(orin_bundle), "--allow-unsigned"]) == 0 and "not checkable here or not applicable" in capsys.readouterr().out
