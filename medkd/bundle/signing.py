"""Ed25519 signing keys and the bundle signature (``manifest.sig``).

Keys are PEM files: the private key PKCS#8 (encrypted when ``MEDKD_KEY_PASSPHRASE`` is set), the public
key SubjectPublicKeyInfo beside it as ``KEY.pub``. A key is named by its fingerprint: ``sha256:`` and
the hex SHA-256 of its 32 raw public bytes. The signature document is JSON with the signed member's
name, the signer's public key and fingerprint, and the Ed25519 signature of the member's exact bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from medkd.artifacts import atomic_path
from medkd.errors import BadInput

PASSPHRASE_ENV = "MEDKD_KEY_PASSPHRASE"
ALGORITHM = "ed25519"
FINGERPRINT_PREFIX = "sha256:"


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return FINGERPRINT_PREFIX + hashlib.sha256(raw).hexdigest()


def public_key_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def generate_keypair(private_path: Path, overwrite: bool = False) -> str:
    """Write a new private key (mode 0600) and ``KEY.pub``; return the key's fingerprint."""
    public_path = public_key_path(private_path)
    existing = [p for p in (private_path, public_path) if p.exists()]
    if existing and not overwrite:
        raise BadInput(f"{existing[0]} exists: pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    passphrase = _passphrase()
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    with atomic_path(private_path) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    with atomic_path(public_path) as tmp:
        tmp.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return fingerprint(key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (``MEDKD_KEY_PASSPHRASE`` unlocks an encrypted one)."""
    if not path.is_file():
        raise BadInput(f"signing key {path} does not exist")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), _passphrase())
    except (ValueError, TypeError) as exc:
        raise BadInput(f"{path} is not a usable PEM private key ({exc}); set {PASSPHRASE_ENV} for an encrypted key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"{path} is not an Ed25519 key (medkd keys generate makes one)")
    return key


PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)


def load_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """The Ed25519 public keys of a PEM file (one or more ``PUBLIC KEY`` blocks, nothing else)."""
    if not path.is_file():
        raise BadInput(f"public key {path} does not exist")
    keys = []
    for block in PEM_BLOCK.finditer(path.read_bytes()):
        if block.group(1) != b"PUBLIC KEY":
            raise BadInput(f"{path} holds a '{block.group(1).decode()}' PEM block, not only public keys (never hand out or install a private key)")
        try:
            key = serialization.load_pem_public_key(block.group(0))
        except ValueError as exc:
            raise BadInput(f"{path} holds a PEM public key that does not load ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise BadInput(f"{path} holds a public key that is not Ed25519")
        keys.append(key)
    if not keys:
        raise BadInput(f"{path} holds no PEM public key")
    return keys


def parse_fingerprint(text: str) -> str:
    """A key fingerprint as given (``sha256:`` and 64 hex digits), lower-cased."""
    digest = text.removeprefix(FINGERPRINT_PREFIX).lower()
    if not text.startswith(FINGERPRINT_PREFIX) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise BadInput(f"a key fingerprint is {FINGERPRINT_PREFIX} and 64 hex digits, not '{text}'")
    return FINGERPRINT_PREFIX + digest


def sign(key: Ed25519PrivateKey, member: str, data: bytes) -> bytes:
    """The signature document for ``member`` whose exact bytes are ``data``."""
    public = key.public_key()
    document = {
        "algorithm": ALGORITHM,
        "signed_member": member,
        "public_key": base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode(),
        "public_key_fingerprint": fingerprint(public),
        "signature": base64.b64encode(key.sign(data)).decode(),
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def check_signature(document: bytes, member: str, data: bytes) -> str:
    """The signer's fingerprint when ``document`` is a valid signature of ``data`` (whether that signer
    is trusted is :mod:`medkd.bundle.trust`'s question).

    Raises ``ValueError`` with what is wrong: malformed, another member, a key that is not the one
    named, a signature that does not match.
    """
    try:
        value: dict[str, Any] = json.loads(document.decode("utf-8"))
        raw_key = base64.b64decode(value["public_key"], validate=True)
        signature = base64.b64decode(value["signature"], validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw_key)
        algorithm, signed, stated = value["algorithm"], value["signed_member"], value["public_key_fingerprint"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"the signature document is malformed ({type(exc).__name__}: {exc})") from exc
    if algorithm != ALGORITHM or signed != member:
        raise ValueError(f"the signature is {algorithm} over '{signed}', expected {ALGORITHM} over '{member}'")
    actual = fingerprint(public)
    if stated != actual:
        raise ValueError(f"the signature names key {stated} but carries key {actual}")
    try:
        public.verify(signature, data)
    except InvalidSignature:
        raise ValueError(f"the signature by {actual} does not match {member} (edited after signing, or signature replaced)") from None
    return actual
