"""``medkd cache``: inspect and verify a teacher-target cache."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medkd.errors import MedkdError

app = typer.Typer(help="Inspect and verify the teacher-embedding cache.", no_args_is_help=True)

_DIRECTORY = typer.Option(None, "--dir", help="Cache directory (default: teacher-targets in the medkd cache).")


def _open(directory: Path | None):
    from medkd.distill.teacher_targets import default_teacher_cache
    from medkd.distill.embedding_cache import EmbeddingCache

    return EmbeddingCache(directory or default_teacher_cache())


@app.command()
def info(directory: Path = _DIRECTORY, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Entries, shards, bytes and the hit rate of the last fill."""
    summary = _open(directory).info()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    rate = "-" if summary["hit_rate"] is None else f"{summary['hit_rate']:.1%}"
    typer.echo(f"{summary['directory']}: {summary['entries']} entries in {summary['shards']} shards, "
               f"{summary['bytes'] / (1 << 20):.1f} MiB; last fill hit rate {rate}")


@app.command()
def verify(directory: Path = _DIRECTORY) -> None:
    """Re-hash every shard against its index; exit 1 on any mismatch or partial file."""
    cache = _open(directory)
    problems = cache.verify()
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise MedkdError(f"{len(problems)} problems in {cache.directory}")
    typer.echo(f"{cache.directory}: {len(cache)} entries verified")
