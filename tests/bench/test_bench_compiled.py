"""Compiled backends on a tiny U-Net: torch.compile (inductor) and an AOTInductor package (C++ compiler)."""

from __future__ import annotations

import pytest

from medkd.bench import read_document
from medkd.cli import run

pytestmark = pytest.mark.slow


def test_torch_compile_compiles_in_the_first_warmup_call(tmp_path, tiny_unet):
    out = tmp_path / "compiled.json"
    assert run(["bench", str(tiny_unet), "--backend", "torch-compile", "--warmup", "2", "--iters", "3", "--threads", "1", "--out", str(out)]) == 0
    (entry,) = read_document(out)["entries"]
    assert entry["backend"] == "torch-compile" and entry["inputs"] == {"image": [1, 4, 256, 256]}
    assert entry["first_call_ms"] > 10 * entry["latency_ms"]["p50"]  # compilation, not inference


def test_aoti_package(tmp_path, tiny_unet, synth_manifest_train):
    package = tmp_path / "aoti"
    assert run(["export", "aoti", str(tiny_unet), "--out", str(package), "--data", str(synth_manifest_train), "--split", "all", "--validate-samples", "1"]) == 0
    out = tmp_path / "aoti.json"
    assert run(["bench", str(package / "model.pt2"), "--backend", "aoti", "--warmup", "1", "--iters", "3", "--threads", "1", "--out", str(out)]) == 0
    (entry,) = read_document(out)["entries"]
    assert (entry["model"], entry["graph"], entry["file"], entry["device"]) == ("unet", "unet", "model.pt2", "cpu")
    assert entry["artifact_id"].startswith("aoti-")
    assert run(["bench", str(package), "--backend", "aoti", "--batch", "2", "--iters", "1", "--warmup", "0"]) == 0
