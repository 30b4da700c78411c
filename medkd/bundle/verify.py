"""``medkd verify``: a verdict per check of a bundle.

Checks: the members (read safely, without writing: :mod:`medkd.bundle.unpack`), the manifest schema, the
SHA-256 of every listed file, the signature against the trust store (:mod:`medkd.bundle.trust`), and,
only for a bundle that passes those, whether this device can run each variant
(:mod:`medkd.bundle.compatibility`, on the files unpacked into a temporary directory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medkd.bundle.checks import Check
from medkd.bundle.compatibility import device_checks
from medkd.bundle.device import DeviceProfile, local_device
from medkd.bundle.schema import BundleManifest
from medkd.bundle.trust import TrustPolicy, signature_verdict
from medkd.bundle.unpack import DEFAULT_LIMITS, Scan, UnpackLimits, UnsafeBundle, scan_bundle, unpacked


@dataclass
class Verification:
    """Every check of a bundle, its manifest when readable, and the state of its signature (signed,
    unsigned, untrusted or invalid: :data:`medkd.bundle.trust.SIGNATURE_STATES`; ``None`` when the
    bundle could not be read that far)."""

    bundle: Path
    checks: list[Check] = field(default_factory=list)
    manifest: BundleManifest | None = None
    signature: str | None = None

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


def integrity_checks(manifest: BundleManifest, digests: dict[str, str]) -> list[Check]:
    """One check per listed file: present, with the SHA-256 the manifest lists."""
    checks = []
    for name, digest in sorted(manifest.files.items()):
        actual = digests.get(name)
        if actual is None:
            checks.append(Check(f"file {name}", "fail", "missing: listed in manifest.json but not in the bundle"))
        elif actual == digest:
            checks.append(Check(f"file {name}", "pass", f"SHA-256 {digest[:16]}... matches"))
        else:
            checks.append(Check(f"file {name}", "fail", f"changed: SHA-256 {actual[:16]}..., manifest.json says {digest[:16]}..."))
    return checks


def inspect_bundle(bundle: Path, trust: TrustPolicy, limits: UnpackLimits = DEFAULT_LIMITS) -> tuple[Verification, Scan | None]:
    """Members, schema, integrity and signature of ``bundle``, read without writing anything; the scan
    too when the manifest is valid."""
    try:
        scan = scan_bundle(bundle, limits)
    except UnsafeBundle as exc:
        return Verification(bundle, [Check("members", "fail", problem) for problem in exc.problems]), None
    head = scan.head
    if head.manifest is None:
        return Verification(bundle, [Check("schema", "fail", str(head.schema_error))]), None
    manifest = head.manifest
    signature = signature_verdict(head.signature, head.manifest_bytes, manifest.signer, trust)
    checks = [
        Check("members", "pass", f"{len(scan.digests)} files, all regular, with plain relative paths and the sizes manifest.json declares"),
        Check("schema", "pass", f"{manifest.format} schema {manifest.schema}, {len(manifest.variants)} variant(s)"),
        *integrity_checks(manifest, scan.digests),
        signature.check,
    ]
    return Verification(bundle, checks, manifest, signature.state), scan


def verify_bundle(bundle: Path, trust: TrustPolicy, device: DeviceProfile | None = None, limits: UnpackLimits = DEFAULT_LIMITS) -> Verification:
    """Every check of ``bundle`` under ``trust``; ``device`` defaults to this machine."""
    verification, scan = inspect_bundle(bundle, trust, limits)
    if scan is None:
        return verification
    if verification.failed:
        verification.checks.append(Check("device", "skip", "not checked: the bundle failed the checks above"))
        return verification
    with unpacked(bundle, scan, "medkd-verify-", limits) as root:
        verification.checks += device_checks(scan.head.manifest.variants, root, device or local_device())  # type: ignore[union-attr]
    return verification
