"""``medkd report RUN --out report.html``: one static HTML page about a run."""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    run: Path = typer.Argument(..., help="Run directory holding artifacts (teacher, student, export, quant...), eval and bench JSON."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    data: Path = typer.Option(None, "--data", "-d", help="Data manifest for the mask panels (default: the one the artifacts name)."),
    split: str = typer.Option("test", help="Split the sample objects come from (or all)."),
    per_modality: int = typer.Option(1, min=1, help="Sample objects per modality."),
    crop: str = typer.Option(None, help="Override the crop each model was trained with (none or box) for the mask panels."),
    bench: list[Path] = typer.Option(None, "--bench", help="More benchmark results JSON to include (repeatable)."),
) -> None:
    """Write a static HTML report: provenance, accuracy, latency, latency-vs-DSC plot, masks."""
    from medkd.artifacts import atomic_write_text
    from medkd.report import build_report

    page, summary = build_report(run, data, split, per_modality, crop, bench or [])
    atomic_write_text(out, page)
    typer.echo(f"wrote {out}: {summary['artifacts']} artifacts, {summary['points']} plotted points, {len(page) // 1024} KiB")
