"""``medkd pack``, ``medkd verify``, ``medkd keys generate`` and ``medkd keys list``: signed vendor bundles."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from medkd.cli.output import stdout_console
from medkd.cli.trust_options import allow_unsigned_option, trust_store_option
from medkd.errors import BadInput

keys_app = typer.Typer(help="Ed25519 signing keys for bundles.", no_args_is_help=True)
VERDICT_STYLES = {"pass": "green", "fail": "bold red", "skip": "yellow"}


def pack_command(
    run: Path = typer.Argument(..., help="Run directory with stage artifacts (RUN/export, RUN/quant, engines, student, teacher), or an export directory."),
    target: str = typer.Option(..., "--target", "-t", help="x86-cpu, arm64-cpu, jetson-orin or jetson-xavier."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle to write: NAME.medkd."),
    sign: Path = typer.Option(None, "--sign", help="Ed25519 private key (medkd keys generate) to sign the manifest with."),
    model_id: str = typer.Option(None, "--model-id", help="Model id (default: NAME of NAME.medkd)."),
    model_version: str = typer.Option(None, "--model-version", help="Model version (default: the export artifact's content id)."),
    licence: str = typer.Option(None, "--licence", help="Licence of the model weights, e.g. an SPDX id."),
    report: list[Path] = typer.Option(None, "--report", help="medkd eval or benchmark JSON outside RUN to include (repeatable)."),
) -> None:
    """Pack a run's ONNX models and engines for one target into a signed bundle with manifest and model card."""
    from medkd.bundle import PackOptions, pack_bundle

    result = pack_bundle(run, out, PackOptions(target, sign, model_id, model_version, licence, list(report or [])))
    manifest = result.manifest
    table = Table(title=f"{out.name}: {manifest.model.id} {manifest.model.version} for {manifest.target.name}")
    for header in ("variant", "format", "precision", "files"):
        table.add_column(header)
    for variant in manifest.variants:
        table.add_row(variant.name, variant.format, variant.precision, ", ".join(g.file for g in variant.graphs))
    console = stdout_console()
    console.print(table)
    for path, reason in result.skipped:
        typer.echo(f"left out {path}: {reason}", err=True)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    signed = f", signed by {manifest.signer}" if manifest.signer else ", unsigned"
    typer.echo(f"wrote {out}: {result.size} bytes, {len(manifest.files)} files, {len(manifest.accuracy)} accuracy record(s){signed}")


SIGNATURE_WORDS = {
    "signed": "signed by a trusted key",
    "unsigned": "unsigned",
    "untrusted": "signed by a key that is not trusted here",
    "invalid": "signature invalid",
}


def verify_command(
    bundle: Path = typer.Argument(..., help="Bundle to check (NAME.medkd)."),
    trust_store: str = trust_store_option("--pubkey"),
    allow_unsigned: bool = allow_unsigned_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check a bundle's members, schema, files, signature (signed, unsigned, untrusted or invalid) and fit to this device; exit 2 if any check fails."""
    from medkd.bundle import trust_policy, verify_bundle

    verification = verify_bundle(bundle, trust_policy(trust_store, allow_unsigned))
    failed, signature = verification.failed, verification.signature
    if as_json:
        report = {"bundle": str(bundle), "ok": not failed, "signature": signature, "checks": [asdict(c) for c in verification.checks]}
        typer.echo(json.dumps(report, indent=2))
    else:
        table = Table(title=f"medkd verify {bundle.name}")
        for header in ("check", "verdict", "detail"):
            table.add_column(header)
        for check in verification.checks:
            table.add_row(check.name, f"[{VERDICT_STYLES[check.status]}]{check.status}[/]", check.message)
        stdout_console().print(table)
    state = f" ({SIGNATURE_WORDS[signature]})" if signature else ""
    if failed:
        raise BadInput(f"{bundle.name} is refused{state}: {len(failed)} check(s) failed; first: {failed[0].name}: {failed[0].message}")
    if not as_json:
        skipped = sum(c.status == "skip" and c.name != "signature" for c in verification.checks)
        verdict = "signed by a trusted key; all checks passed"
        if signature == "unsigned":
            verdict = "UNSIGNED, accepted because of --allow-unsigned (development only); all other checks passed"
        typer.echo(f"{bundle.name}: {verdict}" + (f" ({skipped} not checkable here or not applicable)" if skipped else ""))


@keys_app.command("generate")
def generate_command(
    out: Path = typer.Option(..., "--out", "-o", help="Private key file to write (PEM, mode 0600); the public key goes to OUT.pub."),
    force: bool = typer.Option(False, "--force", help="Replace existing key files."),
) -> None:
    """Generate an Ed25519 key pair for signing bundles (set MEDKD_KEY_PASSPHRASE to encrypt the private key)."""
    from medkd.bundle.signing import generate_keypair, public_key_path

    fingerprint = generate_keypair(out, force)
    typer.echo(f"wrote {out} (private, keep it secret) and {public_key_path(out)} (public, give it to vendors): {fingerprint}")


@keys_app.command("list")
def list_command(trust_store: str = trust_store_option()) -> None:
    """The keys a trust store trusts and revokes, by fingerprint: what verify, segment and bench accept here."""
    from medkd.bundle.trust import REVOKED_FILE, TRUST_STORE_ENV, trust_policy

    store = trust_policy(trust_store).store
    if store is None:
        raise BadInput(f"no trust store: pass --trust-store or set {TRUST_STORE_ENV}")
    table = Table(title=f"trust store {store.source}")
    for header in ("fingerprint", "status", "from"):
        table.add_column(header, no_wrap=True)
    for key, source in store.keys.items():
        table.add_row(key, "[bold red]revoked[/]" if key in store.revoked else "[green]trusted[/]", Path(source).name)
    for key in sorted(store.revoked - set(store.keys)):
        table.add_row(key, "[bold red]revoked[/]", REVOKED_FILE)
    stdout_console().print(table)
