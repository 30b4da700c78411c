"""``medkd keys generate``, signatures over exact bytes, and the manifest schema."""

from __future__ import annotations

import json
import re
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from medkd.bundle.schema import canonical_bytes, parse_manifest
from medkd.bundle.signing import (
    PASSPHRASE_ENV,
    check_signature,
    fingerprint,
    load_private_key,
    load_public_keys,
    parse_fingerprint,
    public_key_path,
    sign,
)
from medkd.cli import run
from medkd.errors import BadInput
from tests.bundle.conftest import read_members


def test_keys_generate_writes_a_private_key_only_its_owner_reads(tmp_path, capsys):
    key = tmp_path / "vendor.pem"
    assert run(["keys", "generate", "--out", str(key)]) == 0
    printed = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    (public,) = load_public_keys(public_key_path(key))
    assert printed == fingerprint(public) == fingerprint(load_private_key(key).public_key())
    assert len(printed) == len("sha256:") + 64
    assert run(["keys", "generate", "--out", str(key)]) == 2
    assert "exists: pass --force" in capsys.readouterr().err
    assert run(["keys", "generate", "--out", str(key), "--force"]) == 0
    assert fingerprint(load_private_key(key).public_key()) != printed


def test_a_passphrase_encrypts_the_private_key(tmp_path, monkeypatch):
    key = tmp_path / "locked.pem"
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    assert run(["keys", "generate", "--out", str(key)]) == 0
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    load_private_key(key)
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(BadInput, match=f"set {PASSPHRASE_ENV} for an encrypted key"):
        load_private_key(key)


def test_only_ed25519_keys_sign(tmp_path):
    other = tmp_path / "ec.pem"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(BadInput, match="is not an Ed25519 key"):
        load_private_key(other)
    with pytest.raises(BadInput, match="a key fingerprint is sha256: and 64 hex digits, not 'sha256:abc'"):
        parse_fingerprint("sha256:abc")


def test_the_signature_covers_every_byte(signing_key):
    key = load_private_key(signing_key)
    data = canonical_bytes({"format": "x", "value": 1})
    document = sign(key, "manifest.json", data)
    assert check_signature(document, "manifest.json", data) == fingerprint(key.public_key())
    with pytest.raises(ValueError, match="does not match manifest.json"):
        check_signature(document, "manifest.json", data[:-1] + b" ")
    with pytest.raises(ValueError, match="expected ed25519 over 'other.json'"):
        check_signature(document, "other.json", data)
    with pytest.raises(ValueError, match="malformed"):
        check_signature(b"{}", "manifest.json", data)
    forged = json.loads(document)
    forged["public_key_fingerprint"] = "sha256:" + "0" * 64
    with pytest.raises(ValueError, match="names key sha256:0000"):
        check_signature(json.dumps(forged).encode(), "manifest.json", data)


@pytest.mark.data
def test_the_schema_refuses_unknown_missing_newer_and_dangling(unet_bundle):
    members = {info.name: data for info, data in read_members(unet_bundle)}
    value = json.loads(members["manifest.json"])
    assert canonical_bytes(value) == members["manifest.json"]
    assert parse_manifest(members["manifest.json"]).model.id == "unet"
    cases = [
        (lambda v: v.update(extra=1), "manifest: unknown key 'extra'"),
        (lambda v: v["model"].pop("version"), "manifest.model: missing key 'version'"),
        (lambda v: v.update(schema=1), "bundle schema 1 is not one this medkd reads (2, 3): pack the bundle again with this medkd"),
        (lambda v: v.update(schema=4), "bundle schema 4 is not one this medkd reads (2, 3)"),
        (lambda v: v["variants"][0]["graphs"][0].pop("runtime"), "manifest.variants[onnx-fp32].graphs[unet].runtime: one of onnx, onnxruntime-cpu, onnxruntime-cpu-vnni, tensorrt"),
        (lambda v: v["sizes"].pop("MODEL_CARD.md"), "manifest.sizes: no size for MODEL_CARD.md"),
        (lambda v: v["sizes"].update({"extra.onnx": 1}), "manifest.sizes: extra.onnx is not among the hashed files"),
        (lambda v: v["sizes"].update({"MODEL_CARD.md": -1}), "manifest.sizes[MODEL_CARD.md]: expected a size in bytes, got -1"),
        (lambda v: v["files"].update({"MODEL_CARD.md/x": "0" * 64}), "manifest.files: MODEL_CARD.md is both a file and a folder"),
        (lambda v: v["variants"][0].update(format="pt2"), "manifest.variants[0].format: expected one of onnx, tensorrt"),
        (lambda v: v["files"].pop("variants/onnx-fp32/unet.onnx"), "variants/onnx-fp32/unet.onnx is not among the hashed files"),
        (lambda v: v.update(format="other"), "is not a medkd.bundle manifest"),
        (lambda v: v["variants"][0].update(directory="variants/evil.pt2"), "manifest.variants[onnx-fp32]: a variant is named with a-z, 0-9 and '-' and lies in variants/NAME"),
        (lambda v: v["files"].update({"../outside.onnx": "0" * 64}), "manifest.files: ../outside.onnx is not a path inside the bundle"),
    ]
    for change, message in cases:
        edited = json.loads(members["manifest.json"])
        change(edited)
        with pytest.raises(BadInput, match=re.escape(message)):
            parse_manifest(canonical_bytes(edited))
    schema_2 = json.loads(members["manifest.json"])  # as packed before graphs named their runtime
    schema_2["schema"] = 2
    for variant in schema_2["variants"]:
        for graph in variant["graphs"]:
            graph.pop("runtime")
    assert parse_manifest(canonical_bytes(schema_2)).variants[0].graphs[0].runtime is None
