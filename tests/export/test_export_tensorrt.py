"""TensorRT engines from a tiny export; runs only where TensorRT and a CUDA GPU are present."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install medkd[tensorrt] on a GPU host)")

from medkd.artifacts import read_manifest  # noqa: E402
from medkd.cli import run  # noqa: E402

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu, pytest.mark.data]


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engines_build_with_metadata_and_segment_like_onnx(sam_export, ct_manifest, precision, tmp_path):
    out = tmp_path / precision
    cache = tmp_path / "timing.cache"
    assert run(["export", "tensorrt", str(sam_export), "--precision", precision, "--out", str(out), "--timing-cache", str(cache)]) == 0
    manifest = read_manifest(out, "engines")
    engines = manifest.config["engines"]
    assert set(engines) == {"encoder", "decoder_trt"} and cache.stat().st_size > 0
    assert engines["encoder"]["tensorrt"] == trt.__version__ and engines["encoder"]["compute_capability"]
    assert engines["decoder_trt"]["profiles"]["point_coords"][2] == [16, 4, 2]
    if precision == "fp16":
        assert engines["encoder"]["fp32_layers"] > 0
    reports = {}
    for model in (sam_export, out):
        target = tmp_path / f"{model.name}.json"
        assert run(["eval", "--model", str(model), "--data", str(ct_manifest), "--split", "val", "--limit", "4", "--out", str(target), "--no-cache"]) == 0
        reports[model] = json.loads(target.read_text())["summary"]["overall"]["dsc"]["mean"]
    assert np.isclose(reports[sam_export], reports[out], atol=0.02)
