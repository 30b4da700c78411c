"""Real-size students and teachers (random weights: no checkpoint downloads in CI) exported to ONNX
and validated on real CT slices; each takes one to several minutes on a 2-core CPU."""

from __future__ import annotations

import pytest

from medkd.artifacts import read_manifest
from tests.conftest import make_model_artifact
from tests.export.conftest import export_onnx

pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.mark.parametrize("name", ["tinyvit-256", "tinyvit", "sam-vit-b"])
def test_real_size_export_agrees_with_pytorch(name, ct_manifest, tmp_path):
    source = make_model_artifact(tmp_path / "model", name, {})
    out = export_onnx(source, tmp_path / "export", ct_manifest)
    report = read_manifest(out, "export").metrics["validation"]
    assert report["max_abs_logit_diff"] <= 1e-3 and report["decoder_trt_max_abs_diff"] <= 1e-3
    assert report["min_mask_dsc"] >= 0.99 and report["interface_masks_min_dsc"] >= 0.99
