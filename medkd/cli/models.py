"""``medkd models``: the zoo as a table, one entry in full, or JSON."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from medkd.cli.output import stdout_console
from medkd.errors import BadInput

app = typer.Typer(help="List the model zoo: teachers and students, sizes and cost.", no_args_is_help=False)
FLOPS_NOTE = "GFLOPs: floating-point operations of the encoder for one image (1 multiply-add = 2 FLOPs), torch.utils.flop_counter"


@functools.cache
def describe(name: str) -> dict[str, Any]:
    """Everything the zoo knows about one entry, measured where it is a number (once per process)."""
    from medkd.zoo import default_preprocessing, get_spec, profile_model

    spec = get_spec(name)
    profile = profile_model(spec)
    checkpoint = spec.checkpoint
    return {
        "name": spec.name,
        "role": spec.role,
        "family": spec.family,
        "description": spec.description,
        "input_size": spec.input_size,
        "output_shape": list(profile.output_shape),
        "encoder_params": profile.encoder_params,
        "total_params": profile.total_params,
        "encoder_gflops": round(profile.encoder_gflops, 3),
        "flops_unit": "FLOPs (1 multiply-add = 2)",
        "config": {key: list(v) if isinstance(v, tuple) else v for key, v in spec.defaults.items()},
        "checkpoint": None
        if checkpoint is None
        else {"file": checkpoint.filename, "url": checkpoint.url, "sha256": checkpoint.sha256, "note": checkpoint.note},
        "preprocessing": {key: value for key, value in default_preprocessing(name).to_dict().items() if key != "rules"},
    }


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


@app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    role: str = typer.Option(None, help="Only 'teacher' or 'student' entries."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every zoo entry with parameters and encoder GFLOPs."""
    if ctx.invoked_subcommand is not None:
        return
    if role not in (None, "teacher", "student"):
        raise typer.BadParameter("must be 'teacher' or 'student'", param_hint="--role")
    from medkd.zoo import list_models

    entries = [describe(name) for name in list_models(role)]
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    table = Table(title="medkd model zoo", caption=FLOPS_NOTE)
    for column in ("name", "role", "input", "output", "encoder params", "total params", "encoder GFLOPs", "checkpoint"):
        table.add_column(column, justify="right" if "params" in column or "GFLOPs" in column else "left")
    for entry in entries:
        checkpoint = entry["checkpoint"]
        table.add_row(
            entry["name"],
            entry["role"],
            f"{entry['input_size']} px",
            "x".join(map(str, entry["output_shape"])),
            _millions(entry["encoder_params"]),
            _millions(entry["total_params"]),
            f"{entry['encoder_gflops']:.1f}",
            "-" if checkpoint is None else checkpoint["file"],
        )
    console = stdout_console()
    console.print(table)
    console.print(_checkpoint_table(entries))


def _checkpoint_table(entries: list[dict[str, Any]]) -> Table:
    """Published checkpoints: file, URL and SHA-256 (or how to obtain the file)."""
    table = Table(title="published checkpoints")
    for column in ("name", "file", "URL", "SHA-256"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        checkpoint = entry["checkpoint"]
        if checkpoint is not None:
            table.add_row(entry["name"], checkpoint["file"], checkpoint["url"] or checkpoint["note"], checkpoint["sha256"] or "-")
    return table


@app.command()
def show(
    name: str = typer.Argument(..., help="Zoo name, e.g. sam-vit-h."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one entry in full: configuration, sizes, checkpoint URL and SHA-256."""
    entry = describe(name)
    if as_json:
        typer.echo(json.dumps(entry, indent=2))
        return
    table = Table(show_header=False, title=name)
    for key, value in entry.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if v not in (None, ""))
        table.add_row(key, str(value))
    stdout_console().print(table)


def _weights_file(name: str, checkpoint: Path | None) -> Path:
    """The state dict file ``check`` reads: the given file, an artifact's weights, or the packaged weights."""
    from medkd.zoo import get_spec, packaged_checkpoint
    from medkd.zoo.artifact import artifact_model_ref

    if checkpoint is None:
        spec = get_spec(name)
        if not spec.packaged:
            raise BadInput(f"{spec.name} has no packaged weights: pass --checkpoint")
        return packaged_checkpoint(spec.checkpoint)  # type: ignore[arg-type]
    return artifact_model_ref(checkpoint)[2] if checkpoint.is_dir() else checkpoint


@app.command()
def check(
    name: str = typer.Argument(..., help="Zoo name of the architecture (with arguments: tinyvit-256:embedding_grid=64)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="State dict file or medkd model artifact (default: the packaged weights)."),
    sha256: str = typer.Option(None, help="Expected SHA-256 of the file."),
) -> None:
    """Load a checkpoint into a zoo architecture and report whether it fits (exit 2 if not), and whether
    it also loads into mobile_sam's / segment_anything's builders at this model's geometry."""
    from rich.console import Console
    from rich.markup import escape

    from medkd.zoo import create_model, read_state_dict
    from medkd.zoo.compatibility import model_geometry, upstream_notes
    from medkd.zoo.profile import count_params

    weights = _weights_file(name, checkpoint)
    model = create_model(name, checkpoint=checkpoint or weights, sha256=sha256)
    typer.echo(f"{checkpoint or weights.name} loads into {name}: {count_params(model) / 1e6:.2f}M parameters")
    errors = Console(stderr=True)
    for warning, line in upstream_notes(read_state_dict(weights), model_geometry(model)):
        if warning:
            errors.print(f"[bold yellow]warning:[/] {escape(line)}", soft_wrap=True)
        else:
            typer.echo(line)
