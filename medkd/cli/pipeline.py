"""``medkd pipeline`` (every stage of a recipe, skipping finished ones) and ``medkd demo``."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from medkd.cli.output import stdout_console
from medkd.cli.vocabulary import data_option, out_option

DEMO_RECIPE = "demo.yaml"
REFERENCE_RECIPE = "reference-cpu.yaml"


def _run(recipe_path: Path, out: Path, data: str | None, start: str | None, only: str | None) -> None:
    from medkd.pipeline.recipe import load_recipe
    from medkd.pipeline.runner import PipelineRunner
    from medkd.pipeline.stages import plan

    if start and only:
        from medkd.errors import BadInput

        raise BadInput("give --from or --only, not both")
    recipe = load_recipe(recipe_path)
    stages = plan(recipe, out, data)
    started = time.monotonic()
    results = PipelineRunner(stages, out, recipe_path).run_all(start, only)
    table = Table(title=f"{recipe.description} ({time.monotonic() - started:.0f} s)")
    for column in ("stage", "status", "seconds"):
        table.add_column(column)
    for result in results:
        table.add_row(result.name, result.status, f"{result.seconds:.1f}")
    stdout_console().print(table)
    typer.echo(f"run in {out}" + (f"; report: {out / 'report.html'}" if (out / "report.html").exists() else ""))


def pipeline_command(
    recipe: Path = typer.Argument(..., help="Pipeline recipe (YAML), e.g. recipes/reference-cpu.yaml."),
    out: Path = out_option("Run directory (default: runs/<recipe name>).", None),
    data: str = data_option("Data folder or manifest (overrides the recipe's; 'synthetic' for phantoms)."),
    start: str = typer.Option(None, "--from", help="Re-run from this stage (a name such as distill:student, or a kind such as export)."),
    only: str = typer.Option(None, "--only", help="Run only this stage (name or kind); its inputs must exist."),
) -> None:
    """Run data, adapt, distill, export, quantize, eval, bench, pack and report; unchanged stages are skipped."""
    _run(recipe, out or Path("runs") / recipe.stem, data, start, only)


def demo_command(
    data: str = data_option("Real data folder: runs recipes/reference-cpu.yaml on it (about 90 minutes on 2 cores)."),
    out: Path = out_option("Run directory (default: runs/demo, or runs/reference-cpu with --data).", None),
) -> None:
    """The whole product in one command: synthetic phantoms to bundles and a report in minutes."""
    from medkd.pipeline.recipe import recipe_file

    if data is None:
        _run(recipe_file(DEMO_RECIPE), out or Path("runs/demo"), "synthetic", None, None)
    else:
        _run(recipe_file(REFERENCE_RECIPE), out or Path("runs/reference-cpu"), data, None, None)
