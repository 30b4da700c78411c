"""The options of every command that accepts a bundle (verify, segment, bench): which keys to trust.

The help names ``MEDKD_TRUST_STORE`` and ``revoked.txt`` (:mod:`medkd.bundle.trust`) as text, so that
the CLI starts without importing the bundle package.
"""

from __future__ import annotations

from typing import Any

import typer


def trust_store_option(*aliases: str) -> Any:
    return typer.Option(
        None,
        "--trust-store",
        *aliases,
        help=(
            "Trusted signing keys: a PEM public key file (KEY.pub), a folder of them (with revoked.txt listing "
            "revoked fingerprints), or one key's sha256: fingerprint. Default: $MEDKD_TRUST_STORE."
        ),
        show_default=False,
    )


def allow_unsigned_option() -> Any:
    return typer.Option(
        False,
        "--allow-unsigned/--require-signature",
        help=(
            "--allow-unsigned (development only) also accepts a bundle that carries no signature and names no signer; "
            "--require-signature, the default, refuses it. The last of the two given counts."
        ),
        show_default=False,
    )
