"""``medkd bench NAME.medkd``: a bundle packed from a run is verified under the trust store, unpacked,
and its ONNX variant timed."""

from __future__ import annotations

import shutil

import pytest

from medkd.bench import read_document
from medkd.bundle.signing import generate_keypair, public_key_path
from medkd.bundle.trust import TRUST_STORE_ENV
from medkd.cli import run

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def run_dir(tiny_unet, unet_export, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-bundle") / "run"
    shutil.copytree(tiny_unet, root / "student")
    shutil.copytree(unet_export, root / "export")
    return root


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench-keys") / "vendor.pem"
    generate_keypair(path)
    return path


@pytest.fixture(scope="module")
def bundle(run_dir, key):
    """The run packed for x86-cpu and signed by ``key``."""
    out = run_dir.parent / "unet.medkd"
    assert run(["pack", str(run_dir), "--target", "x86-cpu", "--sign", str(key), "--out", str(out)]) == 0
    return out


@pytest.fixture(autouse=True)
def trusted(key, monkeypatch):
    """This machine trusts ``key``, by the environment variable."""
    monkeypatch.setenv(TRUST_STORE_ENV, str(public_key_path(key)))


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


def test_an_unsigned_bundle_runs_only_with_allow_unsigned(run_dir, tmp_path, capsys):
    unsigned = tmp_path / "unsigned.medkd"
    assert run(["pack", str(run_dir), "--target", "x86-cpu", "--out", str(unsigned)]) == 0
    capsys.readouterr()
    assert run(["bench", str(unsigned), "--backend", "ort", "--iters", "1", "--warmup", "0"]) == 2
    assert "signature: the bundle is not signed: only bundles signed by a trusted key are accepted" in capsys.readouterr().err
    out = tmp_path / "unsigned.json"
    assert run(["bench", str(unsigned), "--backend", "ort", "--iters", "1", "--warmup", "0", "--allow-unsigned", "--out", str(out)]) == 0
    assert "warning: " in capsys.readouterr().err
    (entry,) = read_document(out)["entries"]
    assert entry["source"] == f"{unsigned}#onnx-fp32" and "unsigned bundle, accepted because of --allow-unsigned" in entry["notes"]


def test_a_bundle_signed_by_an_untrusted_key_is_refused(bundle, tmp_path, monkeypatch, capsys):
    stranger = tmp_path / "stranger.pem"
    generate_keypair(stranger)
    monkeypatch.setenv(TRUST_STORE_ENV, str(public_key_path(stranger)))
    assert run(["bench", str(bundle), "--backend", "ort", "--iters", "1", "--allow-unsigned"]) == 2
    assert "which is not a key of the trust store" in capsys.readouterr().err
