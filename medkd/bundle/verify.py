"""``medkd verify``: a verdict per check of a bundle, after unpacking it safely into a temporary directory.

Checks: the members (safe to unpack), the manifest schema, the SHA-256 of every listed file (and no
file beyond them), the signature (against a trusted key when one is given), and whether this device
can run each variant (:mod:`medkd.bundle.compatibility`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from medkd.artifacts import sha256_file
from medkd.bundle.compatibility import Check, device_checks
from medkd.bundle.device import DeviceProfile, local_device
from medkd.bundle.schema import (
    MANIFEST_MEMBER,
    SIGNATURE_MEMBER,
    BundleManifest,
    parse_manifest,
)
from medkd.bundle.signing import check_signature, trusted_fingerprint
from medkd.bundle.unpack import DEFAULT_LIMITS, UnpackLimits, UnsafeBundle, safe_unpack
from medkd.data.progress import track
from medkd.errors import BadInput


@dataclass
class Verification:
    bundle: Path
    checks: list[Check] = field(default_factory=list)
    manifest: BundleManifest | None = None

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


def integrity_checks(root: Path, members: list[str], manifest: BundleManifest) -> list[Check]:
    """One check per listed file (present, same SHA-256) and one per member the manifest does not list."""
    present = set(members) - {MANIFEST_MEMBER, SIGNATURE_MEMBER}
    checks = []
    for name, digest in track(sorted(manifest.files.items()), len(manifest.files), "checking files"):
        if name not in present:
            checks.append(Check(f"file {name}", "fail", "missing: listed in manifest.json but not in the bundle"))
            continue
        actual = sha256_file(root / name)
        if actual == digest:
            checks.append(Check(f"file {name}", "pass", f"SHA-256 {digest[:16]}... matches"))
        else:
            checks.append(Check(f"file {name}", "fail", f"changed: SHA-256 {actual[:16]}..., manifest.json says {digest[:16]}..."))
    checks += [Check(f"file {name}", "fail", "not listed in manifest.json (added after packing)") for name in sorted(present - set(manifest.files))]
    return checks


def signature_check(root: Path, members: list[str], trusted: str | None, signer: str | None) -> Check:
    if SIGNATURE_MEMBER not in members:
        if trusted is not None:
            return Check("signature", "fail", f"the bundle is not signed, and --pubkey asks for a signature by {trusted}")
        return Check("signature", "skip", "the bundle is not signed")
    manifest_bytes = (root / MANIFEST_MEMBER).read_bytes() if MANIFEST_MEMBER in members else b""
    try:
        actual = check_signature((root / SIGNATURE_MEMBER).read_bytes(), MANIFEST_MEMBER, manifest_bytes, trusted)
    except ValueError as exc:
        return Check("signature", "fail", str(exc))
    if signer is not None and actual != signer:
        return Check("signature", "fail", f"signed by {actual}, but manifest.json names the signer {signer}")
    pinned = "" if trusted is not None else " (key not pinned: pass --pubkey to check who signed)"
    return Check("signature", "pass", f"valid ed25519 signature by {actual}{pinned}")


def inspect_unpacked(root: Path, members: list[str], trusted: str | None, device: DeviceProfile | None) -> Verification:
    """Schema, integrity, signature and (``device`` given, files intact) device checks of an unpacked bundle."""
    verification = Verification(root)
    checks = verification.checks
    manifest = None
    if MANIFEST_MEMBER not in members:
        checks.append(Check("schema", "fail", f"the bundle has no {MANIFEST_MEMBER}"))
    else:
        try:
            manifest = parse_manifest((root / MANIFEST_MEMBER).read_bytes())
            checks.append(Check("schema", "pass", f"{manifest.format} schema {manifest.schema}, {len(manifest.variants)} variant(s)"))
        except BadInput as exc:
            checks.append(Check("schema", "fail", str(exc)))
    if manifest is not None:
        checks += integrity_checks(root, members, manifest)
    checks.append(signature_check(root, members, trusted, None if manifest is None else manifest.signer))
    if device is not None and manifest is not None:
        if any(c.status == "fail" for c in checks):
            checks.append(Check("device", "skip", "not checked: the bundle failed the checks above"))
        else:
            checks += device_checks(manifest.variants, root, device)
    verification.manifest = manifest
    return verification


def verify_bundle(bundle: Path, pubkey: str | None = None, device: DeviceProfile | None = None, limits: UnpackLimits = DEFAULT_LIMITS) -> Verification:
    """Every check of ``bundle``; ``device`` defaults to this machine, ``pubkey`` (PEM file or fingerprint) pins the signer."""
    trusted = trusted_fingerprint(pubkey) if pubkey is not None else None
    with tempfile.TemporaryDirectory(prefix="medkd-verify-") as scratch:
        try:
            members = safe_unpack(bundle, Path(scratch), limits)
        except UnsafeBundle as exc:
            return Verification(bundle, [Check("members", "fail", problem) for problem in exc.problems])
        verification = inspect_unpacked(Path(scratch), members, trusted, device or local_device())
    verification.checks.insert(0, Check("members", "pass", f"{len(members)} files, all regular with plain relative paths"))
    verification.bundle = bundle
    return verification
