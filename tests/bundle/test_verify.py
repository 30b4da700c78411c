"""``medkd verify``: a packed bundle verifies; every kind of tampering fails with its own message."""

from __future__ import annotations

import json
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

from medkd.bundle.schema import canonical_bytes
from medkd.bundle.signing import fingerprint, load_private_key, public_key_path, sign
from medkd.bundle.unpack import UnpackLimits, UnsafeBundle, safe_unpack
from medkd.cli import run
from medkd.data import load_manifest
from tests.bundle.conftest import (
    failures,
    read_members,
    replace_member,
    rewrite,
    verify_json,
)

pytestmark = pytest.mark.data
MODEL = "variants/onnx-fp32/unet.onnx"


def test_a_packed_bundle_verifies(unet_bundle, signing_key, capsys):
    code, report = verify_json(unet_bundle, "--pubkey", str(public_key_path(signing_key)), capsys=capsys)
    assert code == 0 and report["ok"] and failures(report) == []
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["signature"]["status"] == "pass" and "valid ed25519 signature" in checks["signature"]["message"]
    assert checks[f"file {MODEL}"]["status"] == "pass" and checks["device onnx-fp32/unet.onnx"]["message"].startswith("ONNX Runtime")
    pinned = fingerprint(load_private_key(signing_key).public_key())
    assert run(["verify", str(unet_bundle), "--pubkey", pinned]) == 0
    assert "all checks passed" in capsys.readouterr().out


def _flip_byte(data: bytes) -> bytes:
    return data[:100] + bytes([data[100] ^ 1]) + data[101:]


def _edit_manifest(data: bytes) -> bytes:
    value = json.loads(data)
    value["model"]["version"] = "9.9.9"
    return canonical_bytes(value)


def _resign(key_path: Path, with_signer: bool):
    """Another key signs the manifest (naming itself as signer when ``with_signer``)."""
    key = load_private_key(key_path)

    def edit(members):
        contents = {info.name: content for info, content in members}
        manifest = json.loads(contents["manifest.json"])
        if with_signer:
            manifest["signer"] = fingerprint(key.public_key())
        document = canonical_bytes(manifest)
        replaced = {"manifest.json": document, "manifest.sig": sign(key, "manifest.json", document)}
        return [(info, replaced.get(info.name, content)) for info, content in members]

    return edit


def _added(members):
    info = tarfile.TarInfo("variants/onnx-fp32/extra.onnx")
    return [*members, (info, b"not from the packer")]


def _removed(members):
    return [(info, data) for info, data in members if info.name != MODEL]


def _garbled_signature(data: bytes) -> bytes:
    value = json.loads(data)
    value["signature"] = value["signature"][:10] + ("A" if value["signature"][10] != "A" else "B") + value["signature"][11:]
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("tamper", "message", "pinned"),
    [
        ("byte", f"file {MODEL}: changed: SHA-256", False),
        ("manifest", "does not match manifest.json (edited after signing, or signature replaced)", False),
        ("added", "file variants/onnx-fp32/extra.onnx: not listed in manifest.json (added after packing)", False),
        ("removed", f"file {MODEL}: missing: listed in manifest.json but not in the bundle", False),
        ("signature", "does not match manifest.json", False),
        ("signature-other-key", "but manifest.json names the signer", False),
        ("resigned-by-other-key", "not by the trusted key", True),
    ],
)
def test_tampering_fails_with_its_own_message(unet_bundle, signing_key, other_key, tmp_path, tamper, message, pinned, capsys):
    edits = {
        "byte": replace_member(MODEL, _flip_byte),
        "manifest": replace_member("manifest.json", _edit_manifest),
        "added": _added,
        "removed": _removed,
        "signature": replace_member("manifest.sig", _garbled_signature),
        "signature-other-key": _resign(other_key, with_signer=False),
        "resigned-by-other-key": _resign(other_key, with_signer=True),
    }
    bundle = rewrite(unet_bundle, tmp_path / f"{tamper}.medkd", edits[tamper])
    extra = ["--pubkey", str(public_key_path(signing_key))] if pinned else []
    code, report = verify_json(bundle, *extra, capsys=capsys)
    assert code == 1 and not report["ok"]
    assert any(message in failure for failure in failures(report)), failures(report)


def test_the_resigned_bundle_passes_without_a_pinned_key(unet_bundle, other_key, tmp_path, capsys):
    """What --pubkey is for: a consistent re-signing by someone else is only caught against a trusted key."""
    bundle = rewrite(unet_bundle, tmp_path / "resigned.medkd", _resign(other_key, with_signer=True))
    code, report = verify_json(bundle, capsys=capsys)
    assert code == 0 and "key not pinned" in next(c["message"] for c in report["checks"] if c["name"] == "signature")


def test_an_unsigned_bundle_fails_only_when_a_key_is_pinned(unet_run, signing_key, tmp_path, capsys):
    bundle = tmp_path / "unsigned.medkd"
    assert run(["pack", str(unet_run), "--target", "x86-cpu", "--out", str(bundle)]) == 0
    capsys.readouterr()
    code, report = verify_json(bundle, capsys=capsys)
    assert code == 0 and {"name": "signature", "status": "skip", "message": "the bundle is not signed"} in report["checks"]
    code, report = verify_json(bundle, "--pubkey", str(public_key_path(signing_key)), capsys=capsys)
    assert code == 1 and any("the bundle is not signed, and --pubkey asks for a signature" in f for f in failures(report))


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, (b"payload" if kind == tarfile.REGTYPE else None)


ESCAPE = f"medkd-escape-{uuid.uuid4().hex}.txt"
UNSAFE = {
    "outside": (_member(f"../{ESCAPE}"), f"member '../{ESCAPE}' points outside the bundle"),
    "absolute": (_member(f"{tempfile.gettempdir()}/{ESCAPE}"), "has an absolute path"),
    "symlink": (_member("variants/onnx-fp32/link.onnx", tarfile.SYMTYPE, "/etc/passwd"), "member 'variants/onnx-fp32/link.onnx' is a symbolic link"),
    "hardlink": (_member("variants/onnx-fp32/hard.onnx", tarfile.LNKTYPE, "manifest.json"), "member 'variants/onnx-fp32/hard.onnx' is a hard link"),
    "device": (_member("dev", tarfile.CHRTYPE), "member 'dev' is a device"),
    "fifo": (_member("pipe", tarfile.FIFOTYPE), "member 'pipe' is a FIFO"),
    "repeated": (_member("manifest.json"), "member 'manifest.json' appears twice"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_members_are_refused_before_anything_is_written(unet_bundle, tmp_path, case, capsys):
    member, message = UNSAFE[case]
    bundle = rewrite(unet_bundle, tmp_path / f"{case}.medkd", lambda members: [member, *members])
    code, report = verify_json(bundle, capsys=capsys)
    assert code == 1 and any(f.startswith("members: ") and message in f for f in failures(report)), failures(report)
    dest = tmp_path / "unpacked"
    with pytest.raises(UnsafeBundle, match="is refused"):
        safe_unpack(bundle, dest)
    assert not (Path(tempfile.gettempdir()) / ESCAPE).exists() and not (tmp_path / ESCAPE).exists()
    assert not any(path.is_symlink() or not (path.is_file() or path.is_dir()) for path in dest.rglob("*"))


def test_segment_refuses_an_unsafe_or_tampered_bundle(unet_bundle, ct_manifest, tmp_path, capsys):
    manifest = load_manifest(ct_manifest)
    row = manifest.rows[0]
    for name, edit in (("link", lambda m: [UNSAFE["symlink"][0], *m]), ("byte", replace_member(MODEL, _flip_byte))):
        bundle = rewrite(unet_bundle, tmp_path / f"{name}.medkd", edit)
        argv = ["segment", "--bundle", str(bundle), "-i", str(manifest.resolve(row.image)), "--box", ",".join(map(str, row.box)), "-o", str(tmp_path / "m.png")]
        assert run(argv) == 2
        assert "is refused" in capsys.readouterr().err and not (tmp_path / "m.png").exists()


def test_size_and_count_limits(unet_bundle, tmp_path):
    sizes = {info.name: info.size for info, _ in read_members(unet_bundle)}
    with pytest.raises(UnsafeBundle, match=f"member '{MODEL}' is {sizes[MODEL]} bytes, over the limit of 1000"):
        safe_unpack(unet_bundle, tmp_path / "a", UnpackLimits(max_member_bytes=1000))
    with pytest.raises(UnsafeBundle, match="more than 3 members"):
        safe_unpack(unet_bundle, tmp_path / "b", UnpackLimits(max_members=3))
    with pytest.raises(UnsafeBundle, match="members add up to more than 2000 bytes"):
        safe_unpack(unet_bundle, tmp_path / "c", UnpackLimits(max_total_bytes=2000))
    assert sorted(safe_unpack(unet_bundle, tmp_path / "d")) == sorted(sizes)


@pytest.mark.parametrize(("content", "message"), [(b"not an archive", "not a medkd bundle"), (None, "does not exist")])
def test_what_is_not_a_bundle_is_bad_input(tmp_path, content, message, capsys):
    path = tmp_path / "x.medkd"
    if content is not None:
        path.write_bytes(content)
    assert run(["verify", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_manifest_that_breaks_the_schema_fails_verification(unet_bundle, tmp_path, capsys):
    def drop_target(data: bytes) -> bytes:
        value = json.loads(data)
        del value["target"]
        return canonical_bytes(value)

    bundle = rewrite(unet_bundle, tmp_path / "schema.medkd", replace_member("manifest.json", drop_target))
    code, report = verify_json(bundle, capsys=capsys)
    assert code == 1 and "schema: manifest: missing key 'target'" in failures(report)
