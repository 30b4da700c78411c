"""``medkd verify``: a packed bundle verifies; every kind of tampering fails with its own message."""

from __future__ import annotations

import json
import re
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

from medkd.bundle.schema import canonical_bytes
from medkd.bundle.signing import fingerprint, load_private_key
from medkd.bundle.unpack import UnpackLimits, UnsafeBundle, scan_bundle
from medkd.cli import run
from medkd.data import load_manifest
from tests.bundle.conftest import (
    failures,
    pack,
    read_members,
    replace_member,
    reseal,
    rewrite,
    verify_json,
)
from tests.refusals import assert_refused

pytestmark = pytest.mark.data
MODEL = "variants/onnx-fp32/unet.onnx"


def test_a_packed_bundle_verifies(unet_bundle, signing_key, trusted, capsys):
    assert [info.name for info, _ in read_members(unet_bundle)][:3] == ["manifest.json", "manifest.sig", "MODEL_CARD.md"]
    code, report = verify_json(unet_bundle, "--trust-store", trusted, capsys=capsys)
    assert code == 0 and report["ok"] and failures(report) == []
    checks = {c["name"]: c for c in report["checks"]}
    pinned = fingerprint(load_private_key(signing_key).public_key())
    assert checks["signature"] == {"name": "signature", "status": "pass", "message": f"valid ed25519 signature by {pinned}, a trusted key ({trusted})"}
    assert checks[f"file {MODEL}"]["status"] == "pass" and checks["device onnx-fp32/unet.onnx"]["message"].startswith("ONNX Runtime")
    for store in (pinned, trusted):
        assert run(["verify", str(unet_bundle), "--pubkey", store]) == 0
        assert "all checks passed" in capsys.readouterr().out


def _flip_byte(data: bytes) -> bytes:
    return data[:100] + bytes([data[100] ^ 1]) + data[101:]


def _edit_manifest(data: bytes) -> bytes:
    value = json.loads(data)
    value["model"]["version"] = "9.9.9"
    return canonical_bytes(value)


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
    ("tamper", "message"),
    [
        ("byte", f"file {MODEL}: changed: SHA-256"),
        ("longer", f"members: member '{MODEL}' is "),
        ("manifest", "does not match manifest.json (edited after signing, or signature replaced)"),
        ("added", "members: member 'variants/onnx-fp32/extra.onnx' is not listed in manifest.json (added after packing)"),
        ("removed", f"file {MODEL}: missing: listed in manifest.json but not in the bundle"),
        ("signature", "does not match manifest.json"),
        ("signature-other-key", "but manifest.json names the signer"),
        ("resigned-by-other-key", "which is not a key of the trust store"),
    ],
)
def test_tampering_is_refused_with_its_own_message(unet_bundle, trusted, other_key, tmp_path, tamper, message, capsys):
    edits = {
        "byte": replace_member(MODEL, _flip_byte),
        "longer": replace_member(MODEL, lambda data: data + b"\0"),
        "manifest": replace_member("manifest.json", _edit_manifest),
        "added": _added,
        "removed": _removed,
        "signature": replace_member("manifest.sig", _garbled_signature),
        "signature-other-key": reseal(other_key, keep_signer=True),
        "resigned-by-other-key": reseal(other_key),
    }
    bundle = rewrite(unet_bundle, tmp_path / f"{tamper}.medkd", edits[tamper])
    code, report = verify_json(bundle, "--trust-store", trusted, capsys=capsys)
    assert code == 2 and not report["ok"]
    assert any(message in failure for failure in failures(report)), failures(report)


def test_an_unsigned_bundle_is_accepted_only_with_allow_unsigned(unet_run, trusted, tmp_path, capsys):
    bundle = tmp_path / "unsigned.medkd"
    assert run(["pack", str(unet_run), "--target", "x86-cpu", "--out", str(bundle)]) == 0
    capsys.readouterr()
    for store in ([], ["--trust-store", trusted]):
        code, report = verify_json(bundle, *store, capsys=capsys)
        assert code == 2 and any("signature: the bundle is not signed: only bundles signed by a trusted key are accepted" in f for f in failures(report))
        code, report = verify_json(bundle, *store, "--allow-unsigned", capsys=capsys)
        signature = next(c for c in report["checks"] if c["name"] == "signature")
        assert code == 0 and signature == {"name": "signature", "status": "skip", "message": "the bundle is not signed; accepted because of --allow-unsigned (development only)"}


def test_verify_names_the_signature_state(unet_run, unet_bundle, signing_key, other_key, trusted, tmp_path, capsys):
    """Signed, unsigned, untrusted and invalid, each on verify's last line (or in the refusal) and in its JSON;
    --require-signature after --allow-unsigned refuses the unsigned bundle again."""
    unsigned = pack(unet_run, tmp_path / "unsigned.medkd")
    other = pack(unet_run, tmp_path / "other.medkd", "x86-cpu", "--sign", str(signing_key), "--model-version", "2")
    other_signature = next(data for info, data in read_members(other) if info.name == "manifest.sig")
    swapped = rewrite(unet_bundle, tmp_path / "swapped.medkd", replace_member("manifest.sig", lambda _: other_signature))
    capsys.readouterr()
    cases = [
        (unet_bundle, ["--trust-store", trusted], 0, "signed", "unet.medkd: signed by a trusted key; all checks passed"),
        (unsigned, ["--allow-unsigned"], 0, "unsigned", "unsigned.medkd: UNSIGNED, accepted because of --allow-unsigned (development only); all other checks passed"),
        (unsigned, ["--allow-unsigned", "--require-signature"], 2, "unsigned", "error: unsigned.medkd is refused (unsigned): 1 check(s) failed; first: signature: the bundle is not signed"),
        (unet_bundle, ["--trust-store", str(other_key) + ".pub"], 2, "untrusted", "error: unet.medkd is refused (signed by a key that is not trusted here): 1 check(s) failed; first: signature: signed by"),
        (unet_bundle, [], 2, "untrusted", "error: unet.medkd is refused (signed by a key that is not trusted here)"),
        (swapped, ["--trust-store", trusted, "--allow-unsigned"], 2, "invalid", "error: swapped.medkd is refused (signature invalid): 1 check(s) failed; first: signature: "),
    ]
    for bundle, options, code, state, line in cases:
        assert verify_json(bundle, *options, capsys=capsys)[1]["signature"] == state
        assert run(["verify", str(bundle), *options]) == code
        captured = capsys.readouterr()
        if code == 0:
            assert captured.out.splitlines()[-1] == line and captured.err == ""
        else:
            assert_refused(code, captured.err, [], message=line.removeprefix("error: "))


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


@pytest.mark.parametrize(("case", "position"), [(case, position) for case in UNSAFE for position in (0, 2) if (case, position) != ("repeated", 0)])
def test_unsafe_members_are_refused_before_anything_is_written(unet_bundle, trusted, tmp_path, case, position, monkeypatch, capsys):
    """An unsafe member first in the archive, or among the files after manifest.json and manifest.sig."""
    member, message = UNSAFE[case]
    bundle = rewrite(unet_bundle, tmp_path / f"{case}.medkd", lambda members: [*members[:position], member, *members[position:]])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code, report = verify_json(bundle, "--trust-store", trusted, capsys=capsys)
    assert code == 2 and [f for f in failures(report) if f.startswith("members: ")] == failures(report) != []
    assert any(message in f for f in failures(report)), failures(report)
    with pytest.raises(UnsafeBundle, match="is refused"):
        scan_bundle(bundle)
    assert list(scratch.iterdir()) == [] and not (Path(tempfile.gettempdir()) / ESCAPE).exists() and not (tmp_path / ESCAPE).exists()


def test_the_manifest_must_come_first(unet_bundle, tmp_path, capsys):
    """As schema-1 bundles had it: manifest.json and manifest.sig last."""
    bundle = rewrite(unet_bundle, tmp_path / "last.medkd", lambda members: [*members[2:], *members[:2]])
    code, report = verify_json(bundle, capsys=capsys)
    assert code == 2 and failures(report) == ["members: the first member is 'MODEL_CARD.md', not manifest.json (pack the bundle again with this medkd)"]


def test_segment_refuses_an_unsafe_or_tampered_bundle(unet_bundle, trusted, ct_manifest, tmp_path, capsys):
    manifest = load_manifest(ct_manifest)
    row = manifest.rows[0]
    for name, edit in (("link", lambda m: [*m[:2], UNSAFE["symlink"][0], *m[2:]]), ("byte", replace_member(MODEL, _flip_byte))):
        bundle = rewrite(unet_bundle, tmp_path / f"{name}.medkd", edit)
        argv = ["segment", "--model", str(bundle), "--trust-store", trusted, "-i", str(manifest.resolve(row.image)), "--box", ",".join(map(str, row.box)), "-o", str(tmp_path / "m.png")]
        assert_refused(run(argv), capsys.readouterr().err, [tmp_path / "m.png", tmp_path / "m.overlay.png"], message="is refused")


def test_declared_sizes_are_bounded(unet_bundle, tmp_path):
    members = read_members(unet_bundle)
    sizes = {info.name: info.size for info, _ in members if info.name not in ("manifest.json", "manifest.sig")}
    total, archive = sum(sizes.values()), unet_bundle.stat().st_size
    cases = [
        (UnpackLimits(max_member_bytes=1000), f"manifest.json declares '{MODEL}' as {sizes[MODEL]} bytes, over the limit of 1000"),
        (UnpackLimits(max_members=3), f"manifest.json declares {len(sizes)} files, more than 3"),
        (UnpackLimits(max_total_bytes=2000), f"manifest.json declares {total} bytes in all, over the limit of 2000"),
        (UnpackLimits(max_ratio=1.0), f"manifest.json declares {total} bytes in a {archive}-byte archive, more than 1 times its size"),
        (UnpackLimits(max_manifest_bytes=100), f"member 'manifest.json' is {members[0][0].size} bytes, over the limit of 100"),
    ]
    for limits, message in cases:
        with pytest.raises(UnsafeBundle, match=re.escape(message)):
            scan_bundle(unet_bundle, limits)
    scan = scan_bundle(unet_bundle)
    assert list(scan.digests) == list(sizes) and scan.digests == scan.head.manifest.files


@pytest.mark.parametrize(("content", "message"), [(b"not an archive", "not a medkd bundle"), (None, "does not exist")])
def test_what_is_not_a_bundle_is_bad_input(tmp_path, content, message, capsys):
    path = tmp_path / "x.medkd"
    if content is not None:
        path.write_bytes(content)
    assert run(["verify", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_manifest_that_breaks_the_schema_is_refused(unet_bundle, tmp_path, capsys):
    def drop_target(data: bytes) -> bytes:
        value = json.loads(data)
        del value["target"]
        return canonical_bytes(value)

    bundle = rewrite(unet_bundle, tmp_path / "schema.medkd", replace_member("manifest.json", drop_target))
    code, report = verify_json(bundle, capsys=capsys)
    assert code == 2 and failures(report) == ["schema: manifest: missing key 'target'"]
