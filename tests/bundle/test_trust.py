"""The trust model: a tampered, re-signed or stripped bundle, or a decompression bomb, never runs."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from medkd.bundle.signing import fingerprint, load_private_key, public_key_path
from medkd.bundle.trust import TRUST_STORE_ENV
from medkd.cli import run
from medkd.data import load_manifest
from tests.bundle.conftest import Members, failures, pack, read_members, reseal, rewrite, sealed, verify_json
from tests.refusals import assert_refused

pytestmark = pytest.mark.data
MODEL = "variants/onnx-fp32/unet.onnx"
MIB, GIB = 1 << 20, 1 << 30


def _changed_weights(data: bytes) -> bytes:
    """The ONNX model with other weights: its largest initializer negated."""
    model = onnx.load_from_string(data)
    tensor = max(model.graph.initializer, key=lambda t: t.ByteSize())
    tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), tensor.name))
    return model.SerializeToString()


def _changed(key: Path | None, keep_signer: bool = False) -> Callable[[Members], Members]:
    """The weights changed, hashes and sizes recomputed, then signed by ``key`` (or not signed)."""
    recompute = reseal(key, keep_signer)
    return lambda members: recompute([(info, _changed_weights(data) if info.name == MODEL else data) for info, data in members])


def _stripped(members: Members) -> Members:
    return [(info, data) for info, data in members if info.name != "manifest.sig"]


def _gzip_with_zeros(members: Members, zeros: str, size: int, out: Path) -> Path:
    """A tar.gz of ``members`` in which member ``zeros`` holds ``size`` zero bytes (a multiple of 1 MiB):
    each MiB of zeros deflates, after a full flush, to the same thousand bytes, repeated here."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunks, crc, length = [], 0, 0
    mib_of_zeros = bytes(MIB)
    deflated_mib = deflate.compress(mib_of_zeros) + deflate.flush(zlib.Z_FULL_FLUSH)

    def add(data: bytes) -> None:
        nonlocal crc, length
        chunks.append(deflate.compress(data) + deflate.flush(zlib.Z_FULL_FLUSH))
        crc, length = zlib.crc32(data, crc), length + len(data)

    for info, data in members:
        info.size = size if info.name == zeros else len(data)
        add(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if info.name != zeros:
            add(data + bytes(-len(data) % tarfile.BLOCKSIZE))
            continue
        for _ in range(size // MIB):
            chunks.append(deflated_mib)
            crc, length = zlib.crc32(mib_of_zeros, crc), length + MIB
    add(bytes(2 * tarfile.BLOCKSIZE))
    chunks.append(deflate.flush())
    out.write_bytes(b"\x1f\x8b\x08\x00\0\0\0\0\x02\xff" + b"".join(chunks) + struct.pack("<II", crc, length & 0xFFFFFFFF))
    return out


@pytest.fixture(scope="module")
def zero_gib_sha256() -> str:
    digest, mib = hashlib.sha256(), bytes(MIB)
    for _ in range(GIB // MIB):
        digest.update(mib)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def bombs(unet_bundle, signing_key, zero_gib_sha256, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """About 1 MB bundles that inflate to 1 GiB, with (the start of) the refusal each gets. ``undeclared``:
    the signed manifest as packed, its model member 1 GiB of zeros; ``declared``: the manifest says so
    (size and SHA-256), signed by the trusted key; ``long-name``: as packed, with a 1 GiB GNU long name."""
    root = tmp_path_factory.mktemp("bombs")
    members = read_members(unet_bundle)
    contents = {info.name: data for info, data in members}
    manifest = json.loads(contents["manifest.json"])
    packed = manifest["sizes"][MODEL]
    manifest["files"][MODEL], manifest["sizes"][MODEL] = zero_gib_sha256, GIB
    undeclared = _gzip_with_zeros(members, MODEL, GIB, root / "undeclared.medkd")
    declared = _gzip_with_zeros(sealed(contents, manifest, signing_key), MODEL, GIB, root / "declared.medkd")
    total = sum(manifest["sizes"].values())
    long_name = tarfile.TarInfo("././@LongLink")  # a GNU long-name header, whose data tar reads before the member it names
    long_name.type = tarfile.GNUTYPE_LONGNAME
    hidden = _gzip_with_zeros([*members[:2], (long_name, b""), *members[2:]], long_name.name, GIB, root / "long-name.medkd")
    return {
        "long-name": (hidden, "members: the archive inflates to more than the "),
        "undeclared": (undeclared, f"members: member '{MODEL}' is {GIB} bytes, manifest.json declares {packed}"),
        "declared": (
            declared,
            f"members: manifest.json declares {total} bytes in a {declared.stat().st_size}-byte archive, more than 20 times its size (a decompression bomb)",
        ),
    }


def _written_by(action: Callable[[], int]) -> tuple[int, int]:
    """The exit code of ``action`` and the bytes this process wrote meanwhile (/proc/self/io wchar)."""

    def wchar() -> int:
        return int(re.search(r"^wchar: (\d+)$", Path("/proc/self/io").read_text(), re.MULTILINE).group(1))

    before = wchar()
    code = action()
    return code, wchar() - before


def _segment(bundle: Path, ct_manifest: Path, out: Path, *extra: str) -> list[str]:
    manifest = load_manifest(ct_manifest)
    row = manifest.rows[0]
    return ["segment", "--model", str(bundle), *extra, "-i", str(manifest.resolve(row.image)), "--box", ",".join(map(str, row.box)), "-o", str(out)]


def _attack(name: str, other_key: Path) -> Callable[[Members], Members]:
    return {
        "unsigned": _changed(None),
        "resigned": _changed(other_key),
        "resigned-signer-kept": _changed(other_key, keep_signer=True),
        "stripped": _stripped,
    }[name]


MESSAGES = {
    "unsigned": "signature: the bundle is not signed: only bundles signed by a trusted key are accepted (--allow-unsigned, for development, accepts it)",
    "resigned": "signature: signed by {other}, which is not a key of the trust store {store}",
    "resigned-signer-kept": "signature: signed by {other}, but manifest.json names the signer {vendor}",
    "stripped": "signature: manifest.json names the signer {vendor} but the bundle carries no signature (removed after signing)",
}


@pytest.mark.parametrize("attack", list(MESSAGES))
def test_verify_and_segment_refuse_a_tampered_bundle(attack, unet_bundle, signing_key, other_key, trusted, ct_manifest, tmp_path, capsys):
    """From the signed bundle: other weights with recomputed hashes and sizes, unsigned or re-signed by
    another key; or the signature stripped. Only an unsigned bundle that names no signer passes, and
    only with --allow-unsigned."""
    bundle = rewrite(unet_bundle, tmp_path / "tampered.medkd", _attack(attack, other_key))
    keys = {name: fingerprint(load_private_key(key).public_key()) for name, key in (("vendor", signing_key), ("other", other_key))}
    message = MESSAGES[attack].format(store=trusted, **keys)
    mask = tmp_path / "mask.png"
    for extra in ([], ["--allow-unsigned"]):
        code, report = verify_json(bundle, "--trust-store", trusted, *extra, capsys=capsys)
        segmented = run(_segment(bundle, ct_manifest, mask, "--trust-store", trusted, *extra))
        err = capsys.readouterr().err
        if extra and attack == "unsigned":
            assert code == 0 and failures(report) == [] and segmented == 0 and mask.is_file()
            assert "warning: " in err and "the bundle is not signed; accepted because of --allow-unsigned (development only)" in err
            continue
        assert code == 2 and failures(report) == [message]
        assert_refused(segmented, err, [mask, mask.with_name("mask.overlay.png")], message=f"is refused: {message}")


@pytest.mark.parametrize("bomb", ["undeclared", "declared", "long-name"])
def test_a_decompression_bomb_is_refused_before_anything_is_written(bomb, bombs, trusted, ct_manifest, tmp_path, capsys):
    bundle, message = bombs[bomb]
    assert bundle.stat().st_size < 1.2 * MIB
    code, written = _written_by(lambda: run(["verify", str(bundle), "--trust-store", trusted, "--json"]))
    (failure,) = failures(json.loads(capsys.readouterr().out))
    assert code == 2 and written < MIB and failure.startswith(message), (written, failure)
    code, written = _written_by(lambda: run(_segment(bundle, ct_manifest, tmp_path / "mask.png", "--trust-store", trusted)))
    assert written < MIB, written
    assert_refused(code, capsys.readouterr().err, [tmp_path / "mask.png", tmp_path / "mask.overlay.png"], message=f"is refused: {message}")


def test_without_a_trusted_key_a_signed_bundle_is_refused_until_the_environment_names_one(unet_bundle, trusted, ct_manifest, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(TRUST_STORE_ENV, raising=False)
    code, report = verify_json(unet_bundle, "--allow-unsigned", capsys=capsys)
    assert code == 2 and len(failures(report)) == 1
    assert failures(report)[0].endswith(f"but no key is trusted here: pass --trust-store or set {TRUST_STORE_ENV} (a vendor's public key file or folder)")
    assert run(_segment(unet_bundle, ct_manifest, tmp_path / "mask.png")) == 2 and "no key is trusted here" in capsys.readouterr().err
    monkeypatch.setenv(TRUST_STORE_ENV, trusted)
    code, report = verify_json(unet_bundle, capsys=capsys)
    assert code == 0 and report["ok"]
    assert run(_segment(unet_bundle, ct_manifest, tmp_path / "mask.png")) == 0 and (tmp_path / "mask.png").is_file()


def test_a_folder_store_rotates_and_revokes_keys(unet_run, unet_bundle, signing_key, other_key, tmp_path, capsys):
    """Rotation: the new key joins the store, bundles signed by either pass; retiring the old key's file,
    or listing its fingerprint in revoked.txt (which wins over a key file), refuses its bundles."""
    store = tmp_path / "trusted"
    store.mkdir()
    old, new = public_key_path(signing_key), public_key_path(other_key)
    (store / "vendor-2025.pub").write_bytes(old.read_bytes())
    (store / "vendor-2026.pub").write_bytes(new.read_bytes())
    (store / "notes.txt").write_text("not a key: ignored\n")
    resigned = pack(unet_run, tmp_path / "new.medkd", "x86-cpu", "--sign", str(other_key))
    old_print, new_print = (fingerprint(load_private_key(key).public_key()) for key in (signing_key, other_key))
    for bundle in (unet_bundle, resigned):
        assert run(["verify", str(bundle), "--trust-store", str(store)]) == 0
    capsys.readouterr()
    (store / "revoked.txt").write_text(f"# retired 2026-12-01, key file kept by mistake\n{old_print}  # vendor-2025\n")
    code, report = verify_json(unet_bundle, "--trust-store", str(store), capsys=capsys)
    assert code == 2 and failures(report) == [f"signature: signed by {old_print}, a key revoked in {store / 'revoked.txt'}"]
    assert run(["verify", str(resigned), "--trust-store", str(store)]) == 0
    capsys.readouterr()
    assert run(["keys", "list", "--trust-store", str(store)]) == 0
    rows = [line.split("│")[1:4] for line in capsys.readouterr().out.splitlines() if "sha256:" in line]
    assert sorted((fp.strip(), status.strip()) for fp, status, _ in rows) == sorted([(old_print, "revoked"), (new_print, "trusted")])


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("missing", "trust store {root}/missing does not exist"),
        ("private.pem", "{root}/private.pem holds a 'PRIVATE KEY' PEM block, not only public keys"),
        ("folder", "{root}/folder/revoked.txt:2: a key fingerprint is sha256: and 64 hex digits, not 'sha256:12'"),
        ("sha256:12", "a key fingerprint is sha256: and 64 hex digits, not 'sha256:12'"),
    ],
)
def test_a_broken_trust_store_is_bad_input(store, message, unet_bundle, signing_key, tmp_path, capsys):
    (tmp_path / "private.pem").write_bytes(signing_key.read_bytes())
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "revoked.txt").write_text("# revoked\nsha256:12\n")
    location = store if store.startswith("sha256:") else str(tmp_path / store)
    assert run(["verify", str(unet_bundle), "--trust-store", location]) == 2
    assert f"error: {message.format(root=tmp_path)}" in capsys.readouterr().err
