"""``medkd bench NAME.medkd``: a bundle packed from a run is verified, unpacked, and its ONNX variant timed."""

from __future__ import annotations

import shutil

import pytest

from medkd.bench import read_document
from medkd.cli import run

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def bundle(tiny_unet, unet_export, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-bundle")
    shutil.copytree(tiny_unet, root / "run" / "student")
    shutil.copytree(unet_export, root / "run" / "export")
    out = root / "unet.medkd"
    assert run(["pack", str(root / "run"), "--target", "x86-cpu", "--out", str(out)]) == 0
    return out


def test_bundle_onnx_variant(bundle, tmp_path):
    out = tmp_path / "bundle.json"
    assert run(["bench", str(bundle), "--backend", "ort", "--warmup", "1", "--iters", "2", "--threads", "1", "--out", str(out)]) == 0
    (entry,) = read_document(out)["entries"]
    assert (entry["model"], entry["graph"], entry["backend"], entry["precision"]) == ("unet", "unet", "ort", "fp32")
    assert entry["source"].startswith(f"{bundle}#") and entry["artifact_id"].startswith("export-")


@pytest.mark.parametrize(("backend", "message"), [("torch", "use --backend ort, ort-int8 or tensorrt"), ("ort-int8", "no variant for --backend ort-int8")])
def test_bundle_without_a_matching_variant(bundle, backend, message, capsys):
    assert run(["bench", str(bundle), "--backend", backend]) == 2
    assert message in capsys.readouterr().err


def test_tampered_bundle_is_refused(bundle, tmp_path, capsys):
    broken = tmp_path / "broken.medkd"
    broken.write_bytes(bundle.read_bytes()[:-200])
    assert run(["bench", str(broken), "--backend", "ort"]) == 2
    assert "broken.medkd" in capsys.readouterr().err
