"""``medkd bench MODEL``, ``medkd bench compare BASE NEW`` and ``medkd bench device``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.core import TyperGroup

from medkd.cli.output import stdout_console
from medkd.cli.trust_options import allow_unsigned_option, trust_store_option
from medkd.cli.vocabulary import device_option, hidden_alias, legacy_model_argument, model_option, one_of, out_option
from medkd.errors import BadInput, MedkdError


class _RunByDefault(TyperGroup):
    """``medkd bench --model MODEL ...`` (or ``medkd bench MODEL ...``) means ``medkd bench run ...``;
    subcommands keep their names."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    help="Time a model (medkd bench run --model MODEL, short: medkd bench --model MODEL), compare results (compare), describe this device (device).",
    no_args_is_help=True,
)


@app.command("run")
def run_command(
    model: str = model_option("Zoo name, model artifact, export / engines / aoti artifact, ONNX file, .plan engine, .pt2 package or NAME.medkd bundle."),
    backend: str = typer.Option(
        None, "--backend", "-b", help="torch, torch-compile, ort, ort-int8, tensorrt or aoti (default: ort for bundles, ONNX files and exports, tensorrt for engines, aoti for .pt2, else torch)."
    ),
    batch_size: int = typer.Option(1, "--batch-size", help="Images per encoder call (prompts per decoder call)."),
    warmup: int = typer.Option(3, help="Untimed calls first (the first one's time is reported as first_call_ms)."),
    iters: int = typer.Option(20, "--iters", help="Timed calls."),
    threads: int = typer.Option(None, help="CPU threads for PyTorch and ONNX Runtime (default: PyTorch's current number; without torch, this process's cores)."),
    graph: list[str] = typer.Option(None, "--graph", help="Only this graph (encoder, decoder, unet, ...); repeatable."),
    device: str = device_option(),
    power: bool = typer.Option(False, "--power", help="Jetson: sample tegrastats and report energy per inference."),
    out: Path = out_option("Write the results JSON here.", None),
    append: bool = typer.Option(False, "--append", help="Add the entries to the results already in --out (same device)."),
    trust_store: str = trust_store_option(),
    allow_unsigned: bool = allow_unsigned_option(),
    model_argument: str = legacy_model_argument(),
    batch: int = hidden_alias("--batch"),
) -> None:
    """Time every graph of a model on one backend: p50 / p90 / p99 latency, throughput, peak memory."""
    from medkd.bench import BenchOptions, bench_model, device_info, new_document, read_document, write_document
    from medkd.bench.device import device_identity
    from medkd.bench.run import default_backend
    from medkd.bench.tables import entries_table

    model = one_of("--model", model, model_argument, "a positional MODEL")
    if append and (out is None or not out.is_file()):
        raise BadInput("--append adds to an existing results file: give --out FILE.json that exists")
    backend = backend or default_backend(model)
    batch_size = batch if batch is not None else batch_size  # --batch: its old spelling
    options = BenchOptions(backend, batch_size, warmup, iters, threads, tuple(graph or ()), device, power, trust_store=trust_store, allow_unsigned=allow_unsigned)
    entries = bench_model(model, options)
    document = new_document(entries, device_info())
    if append:
        existing = read_document(out)
        if device_identity(existing["device"]) != device_identity(document["device"]):
            raise BadInput(f"{out} was measured on another device; write a new file instead of --append")
        document = {**existing, "entries": existing["entries"] + entries}
    stdout_console().print(entries_table(entries, f"{entries[0]['model']} on {backend}" if entries else model))
    for note in entries[0]["notes"] if entries else []:
        typer.echo(f"note: {note}", err=True)
    if out is not None:
        write_document(out, document)
        typer.echo(f"wrote {out}")


@app.command("compare")
def compare_command(
    base: Path = typer.Argument(..., help="Baseline results JSON."),
    new: Path = typer.Argument(..., help="New results JSON."),
    max_regression: str = typer.Option("10%", "--max-regression", help="Largest allowed slowdown, e.g. 10% or 0.1."),
    metric: str = typer.Option("p50", help="p50, p90, p99 or mean."),
    summary: Path = typer.Option(None, "--summary", help="Append the table as markdown to this file (e.g. $GITHUB_STEP_SUMMARY)."),
) -> None:
    """Ratios new / base per matched measurement; exit 1 on a regression, 2 when the files are not comparable."""
    from rich.table import Table

    from medkd.bench import compare_documents, parse_threshold, read_document
    from medkd.bench.compare import comparison_columns, comparison_rows, load_notes, software_changes
    from medkd.bench.tables import markdown_table

    threshold = parse_threshold(max_regression)
    base_doc, new_doc = read_document(base), read_document(new)
    comparison = compare_documents(base_doc, new_doc, threshold, metric)
    table = Table(title=f"{new.name} against {base.name} ({metric}, regression beyond {threshold:.0%})")
    columns = comparison_columns(metric)
    for column in columns:
        table.add_column(column, justify="right" if "ms" in column or column in ("batch", "new / base") else "left")
    for cells in comparison_rows(comparison):
        table.add_row(*cells)
    console = stdout_console()
    console.print(table)
    for change in software_changes(base_doc, new_doc):
        typer.echo(f"note: software changed: {change}")
    for note in load_notes(base_doc, "BASE") + load_notes(new_doc, "NEW"):
        typer.echo(f"note: {note}")
    if summary is not None:
        with summary.open("a") as handle:
            handle.write(f"### {new.name} against {base.name}\n\n" + markdown_table(columns, comparison_rows(comparison)) + "\n")
    slower = comparison.regressions
    if slower:
        worst = max(slower, key=lambda row: row.ratio or 0)
        worst_text = f"{'/'.join(worst.key)} {worst.ratio:.2f}x"
        raise MedkdError(f"{len(slower)} of {len(comparison.rows)} measurements regressed beyond {threshold:.0%} (worst: {worst_text})")
    typer.echo(f"no regression beyond {threshold:.0%} in {len(comparison.rows)} measurements")


@app.command("device")
def device_command(
    slug: bool = typer.Option(False, "--slug", help="Print only the device's file-name-safe name."),
) -> None:
    """Describe this machine as the results schema records it (JSON), or print its slug."""
    from medkd.bench import device_info, device_slug

    info = device_info()
    typer.echo(device_slug(info) if slug else json.dumps(info, indent=2))
