"""Which signers this machine trusts (the trust store), and the verdict on a bundle's signature.

A trust store is one of: a PEM file of one or more Ed25519 public keys (``medkd keys generate`` writes
``KEY.pub``); a folder of such files (``*.pub``, ``*.pem``) that may also hold ``revoked.txt``, key
fingerprints one per line (``#`` starts a comment) that are refused even while their key is in the
folder; or one key's ``sha256:`` fingerprint. It is named by ``--trust-store``, else by the environment
variable ``MEDKD_TRUST_STORE``; without either, no key is trusted.

The rule: a bundle is accepted only when ``manifest.sig`` is a valid signature of ``manifest.json`` by a
trusted, unrevoked key that ``manifest.json`` names as its signer. ``--allow-unsigned`` (development
only) also accepts a bundle that carries no signature and names no signer; a manifest that names a
signer is never accepted without that signer's valid signature. ``--require-signature`` is the default
that ``--allow-unsigned`` relaxes (of the two, the last one given counts).

Every bundle's signature is in one of four states (:data:`SIGNATURE_STATES`): ``signed`` (by a trusted
key), ``unsigned`` (no signature, no signer named), ``untrusted`` (a valid signature by a key this store
does not trust or has revoked, or no store at all) and ``invalid`` (a signature that does not verify,
another signer than the manifest names, or a named signer's signature removed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from medkd.bundle.checks import Check
from medkd.bundle.schema import MANIFEST_MEMBER
from medkd.bundle.signing import FINGERPRINT_PREFIX, check_signature, fingerprint, load_public_keys, parse_fingerprint
from medkd.errors import BadInput, MedkdWarning

TRUST_STORE_ENV = "MEDKD_TRUST_STORE"
REVOKED_FILE = "revoked.txt"
KEY_SUFFIXES = (".pub", ".pem")
NO_STORE = f"no key is trusted here: pass --trust-store or set {TRUST_STORE_ENV} (a vendor's public key file or folder)"


SIGNATURE_STATES = ("signed", "unsigned", "untrusted", "invalid")


class UnsignedBundleWarning(MedkdWarning):
    """An unsigned bundle was accepted because ``--allow-unsigned`` was given."""


@dataclass(frozen=True)
class TrustStore:
    """Trusted keys by fingerprint (with the file each came from) and revoked fingerprints."""

    source: str
    keys: dict[str, str] = field(default_factory=dict)
    revoked: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TrustPolicy:
    """What a bundle must show to be accepted: a signature by a key of ``store`` (``None``: no store),
    or, with ``allow_unsigned``, no signature and no named signer."""

    store: TrustStore | None
    allow_unsigned: bool = False


def _revoked(path: Path) -> frozenset[str]:
    if not path.is_file():
        return frozenset()
    revoked = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            try:
                revoked.add(parse_fingerprint(entry))
            except BadInput as exc:
                raise BadInput(f"{path}:{number}: {exc}") from None
    return frozenset(revoked)


def load_trust_store(location: str) -> TrustStore:
    """The trust store at ``location``: a PEM public key file, a folder of them, or a fingerprint."""
    if location.startswith(FINGERPRINT_PREFIX):
        return TrustStore(location, {parse_fingerprint(location): "given by fingerprint"})
    path = Path(location)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in KEY_SUFFIXES and not p.name.startswith(".") and p.is_file())
        revoked = _revoked(path / REVOKED_FILE)
    elif path.is_file():
        files, revoked = [path], frozenset()
    else:
        raise BadInput(f"trust store {location} does not exist (a PEM public key file, a folder of them, or sha256:...)")
    keys = {fingerprint(key): str(file) for file in files for key in load_public_keys(file)}
    return TrustStore(str(path), keys, revoked)


def trust_policy(location: str | None = None, allow_unsigned: bool = False) -> TrustPolicy:
    """The policy for ``--trust-store`` (else ``MEDKD_TRUST_STORE``, else no trusted key) and ``--allow-unsigned``."""
    location = location or os.environ.get(TRUST_STORE_ENV) or None
    return TrustPolicy(None if location is None else load_trust_store(location), allow_unsigned)


@dataclass(frozen=True)
class SignatureVerdict:
    """The state of a bundle's signature (one of :data:`SIGNATURE_STATES`) and the check verify reports."""

    state: str
    check: Check


def _verdict(state: str, status: str, message: str) -> SignatureVerdict:
    return SignatureVerdict(state, Check("signature", status, message))  # type: ignore[arg-type]


def _trusted(signer: str, store: TrustStore | None) -> SignatureVerdict:
    if store is None:
        return _verdict("untrusted", "fail", f"signed by {signer}, but {NO_STORE}")
    if signer in store.revoked:
        return _verdict("untrusted", "fail", f"signed by {signer}, a key revoked in {Path(store.source) / REVOKED_FILE}")
    if signer not in store.keys:
        return _verdict("untrusted", "fail", f"signed by {signer}, which is not a key of the trust store {store.source}")
    return _verdict("signed", "pass", f"valid ed25519 signature by {signer}, a trusted key ({store.keys[signer]})")


def signature_verdict(signature: bytes | None, manifest_bytes: bytes, signer: str | None, policy: TrustPolicy) -> SignatureVerdict:
    """The verdict on ``manifest.sig`` (``None``: absent) over ``manifest.json``, whose ``signer`` is given."""
    if signature is None:
        if signer is not None:
            return _verdict("invalid", "fail", f"{MANIFEST_MEMBER} names the signer {signer} but the bundle carries no signature (removed after signing)")
        if policy.allow_unsigned:
            return _verdict("unsigned", "skip", "the bundle is not signed; accepted because of --allow-unsigned (development only)")
        return _verdict(
            "unsigned", "fail", "the bundle is not signed: only bundles signed by a trusted key are accepted (--allow-unsigned, for development, accepts it)"
        )
    try:
        actual = check_signature(signature, MANIFEST_MEMBER, manifest_bytes)
    except ValueError as exc:
        return _verdict("invalid", "fail", str(exc))
    if actual != signer:
        named = f"names the signer {signer}" if signer else "names no signer"
        return _verdict("invalid", "fail", f"signed by {actual}, but {MANIFEST_MEMBER} {named}")
    return _trusted(actual, policy.store)
