"""A tiny SAM student exported once per session, and its quantized artifact."""

from __future__ import annotations

import pytest

from medkd.cli import run
from tests.conftest import TINY_SAM, make_model_artifact

FEW = ["--samples", "4", "--gate-samples", "3", "--test-samples", "3", "--latency-runs", "3"]


@pytest.fixture(scope="session")
def tiny_export(ct_manifest, tmp_path_factory):
    student = make_model_artifact(tmp_path_factory.mktemp("q-student") / "student", "sam-vit-stand-in", TINY_SAM)
    out = tmp_path_factory.mktemp("q-export") / "export"
    assert run(["export", "onnx", str(student), "--out", str(out), "--data", str(ct_manifest), "--split", "all", "--validate-samples", "1"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_quant(tiny_export, ct_manifest, tmp_path_factory):
    """INT8 with the DSC gate at 1 point and the sensitivity sweep, on real CT slices (every candidate
    quantized: no ONNX Runtime fusion check)."""
    out = tmp_path_factory.mktemp("q-int8") / "quant"
    code = run(["quantize", str(tiny_export), "--calib", str(ct_manifest), "--out", str(out), "--max-dsc-drop", "0.01", "--sensitivity", "--no-ort-fusion", *FEW])
    assert code == 0
    return out
