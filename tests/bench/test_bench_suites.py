"""The encoder and end-to-end suites as scripts, on small models and a few real images: JSON in the
results schema, markdown tables, ratios and per-stage times that add up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medkd.bench import read_document
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.data


def run_script(name: str, *args: str) -> str:
    """Run ``benchmarks/NAME`` with this Python; its standard output (the markdown table)."""
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / name), *args], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_encoders_suite(tmp_path, ct_manifest):
    out = tmp_path / "encoders.json"
    stdout = run_script(
        "encoders.py", "--models", "unet", "--quick", "--threads", "1", "--exports", str(tmp_path / "exports"), "--data", str(ct_manifest), "--out", str(out)
    )
    document = read_document(out)
    assert document["suite"] == "encoders"
    assert [(e["model"], e["backend"], e["graph"], e["warmup"], e["iterations"]) for e in document["entries"]] == [
        ("unet", "torch", "unet", 1, 2),
        ("unet", "ort", "unet", 1, 2),
    ]
    torch_p50, ort_p50 = (e["latency_ms"]["p50"] for e in document["entries"])
    assert document["summary"]["reference"] == "unet torch fp32"
    assert document["summary"]["speedup_p50"]["unet/ort/fp32"] == pytest.approx(torch_p50 / ort_p50)
    assert "| unet | student | ort | fp32 | 1x4x256x256 | 1+2 |" in stdout
    assert "target: needs sam-vit-h in torch as the reference" in stdout


def test_end_to_end_suite(tmp_path, ct_manifest, tiny_sam):
    out = tmp_path / "e2e.json"
    stdout = run_script(
        "end_to_end.py",
        "--model",
        str(tiny_sam),
        "--data",
        str(ct_manifest),
        "--images",
        "2",
        "--warmup",
        "1",
        "--passes",
        "2",
        "--exports",
        str(tmp_path / "exports"),
        "--out",
        str(out),
    )
    entries = read_document(out)["entries"]
    assert [(e["backend"], e["graph"]) for e in entries] == [("torch", "end-to-end"), ("ort", "end-to-end")]
    for entry in entries:
        assert entry["details"]["matches_medkd_segment"] is True and entry["threads"] == 2
        assert entry["iterations"] == 2 * entry["details"]["images"] and entry["inputs"] == {"image": [1, 3, 256, 256]}
        stages = entry["stages_ms"]
        assert set(stages) == {"read", "preprocess", "encoder", "decoder", "postprocess"}
        assert sum(s["mean"] for s in stages.values()) == pytest.approx(entry["latency_ms"]["mean"], rel=0.1)
        assert stages["encoder"]["p50"] > 0 and stages["decoder"]["p50"] > 0
    assert "target: sam-vit-stand-in torch median" in stdout and "same mask as medkd segment" in stdout
