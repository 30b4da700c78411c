"""``medkd weights``: fetch published checkpoints into the cache and list what is there."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from medkd.artifacts import sha256_file
from medkd.cli.output import stdout_console
from medkd.errors import BadInput

app = typer.Typer(help="Download and list checkpoints in the weights cache.", no_args_is_help=True)


@app.command()
def fetch(
    name: str = typer.Argument(..., help="Zoo name, or a file name when --url is given."),
    url: str = typer.Option(None, help="Download from this URL instead of the zoo's."),
    sha256: str = typer.Option(None, help="Expected SHA-256 (the zoo's where it publishes one)."),
) -> None:
    """Download a checkpoint (resumable, checksummed, atomic) into the weights cache."""
    from medkd.weights import download, weights_dir
    from medkd.zoo import get_spec

    filename = name
    if url is None:
        checkpoint = get_spec(name).checkpoint
        if checkpoint is None or checkpoint.url is None:
            where = weights_dir() / (checkpoint.filename if checkpoint else f"{name}.pth")
            note = f" ({checkpoint.note})" if checkpoint and checkpoint.note else ""
            raise BadInput(f"'{name}' has no download URL{note}; put the file at {where} or pass --url")
        url, filename, sha256 = checkpoint.url, checkpoint.filename, sha256 or checkpoint.sha256
    dest = weights_dir() / Path(filename).name
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256.lower()):
        typer.echo(f"already cached: {dest}")
        return
    download(url, dest, sha256)
    typer.echo(f"saved {dest}")


@app.command("list")
def list_cached() -> None:
    """Show the cached checkpoints, their sizes, and which zoo entries they verify against."""
    from medkd.weights import cached_files, weights_dir
    from medkd.zoo import get_spec, list_models

    known = {}
    for model in list_models():
        checkpoint = get_spec(model).checkpoint
        if checkpoint is not None:
            known.setdefault(checkpoint.filename, []).append((model, checkpoint.sha256))
    table = Table(title=f"weights cache: {weights_dir()}")
    for column in ("file", "size", "SHA-256", "zoo entries", "verified"):
        table.add_column(column)
    for path in cached_files():
        digest = sha256_file(path)
        entries = known.get(path.name, [])
        expected = {sha for _, sha in entries if sha}
        verified = "-" if not expected else ("yes" if digest in expected else "NO")
        table.add_row(path.name, f"{path.stat().st_size / 2**20:.1f} MiB", digest[:16], ", ".join(m for m, _ in entries), verified)
    stdout_console().print(table)
