"""AOTInductor packages: a tiny SAM compiled for the CPU matches PyTorch and runs under medkd eval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medkd.artifacts import read_manifest
from medkd.cli import run

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_aoti_package_matches_pytorch_and_evaluates_alike(tiny_sam, ct_manifest, tmp_path):
    out = tmp_path / "aoti"
    assert run(["export", "aoti", str(tiny_sam), "--out", str(out), "--data", str(ct_manifest), "--split", "all"]) == 0
    manifest = read_manifest(out, "aoti")
    assert manifest.config["export"]["models"] == ["encoder", "decoder"] and (out / "model.pt2").is_file()
    report = manifest.metrics["validation"]
    assert report["max_abs_logit_diff"] < 1e-4 and report["min_mask_dsc"] >= 0.99
    dscs = {}
    for model in (tiny_sam, out / "model.pt2"):
        target = tmp_path / f"{model.name}.json"
        assert run(["eval", "-m", str(model), "-d", str(ct_manifest), "--split", "val", "--limit", "4", "-o", str(target), "--no-cache"]) == 0
        dscs[model.name] = [o["dsc"] for o in json.loads(target.read_text())["objects"]]
    assert np.allclose(dscs["model.pt2"], dscs[tiny_sam.name], atol=1e-6)
