"""The options every command spells the same way (README, "Command-line conventions").

``--model`` / ``-m``: the model a command reads (zoo name, artifact, export, ``.pt2``, ``.plan``, bundle);
``--data`` / ``-d``: the data manifest (or data folder) it reads; ``--out`` / ``-o``: what it writes;
``--device``: where a PyTorch model runs (``auto``, ``cpu``, ``cuda[:N]``). Old spellings stay as hidden
aliases (a positional model, ``quantize --calib``, ``segment --bundle``), so scripts and recipes keep
working; :func:`one_of` merges an alias into its option.
"""

from __future__ import annotations

from typing import Any, TypeVar

import typer

from medkd.errors import BadInput

T = TypeVar("T")
DEVICE_HELP = "Where a PyTorch model runs: auto, cpu or cuda[:N] (exported models run where they were built)."


def model_option(help: str) -> Any:
    """``--model`` / ``-m``; required, but checked by :func:`one_of` so that the old positional also counts."""
    return typer.Option(None, "--model", "-m", help=f"{help} [required]", show_default=False)


def legacy_model_argument() -> Any:
    """The model as a positional argument, as these commands took it before ``--model`` (hidden)."""
    return typer.Argument(None, hidden=True, show_default=False)


def data_option(help: str, default: Any = None) -> Any:
    return typer.Option(default, "--data", "-d", help=help, show_default=default is not None)


def out_option(help: str, default: Any = ...) -> Any:
    return typer.Option(default, "--out", "-o", help=help, show_default=default not in (..., None))


def device_option(default: str = "auto", help: str = DEVICE_HELP) -> Any:
    return typer.Option(default, "--device", help=help)


def hidden_alias(*names: str) -> Any:
    """An old spelling of an option, still accepted and merged by :func:`one_of`, not shown in ``--help``."""
    return typer.Option(None, *names, hidden=True, show_default=False)


def one_of(option: str, value: T | None, alias: T | None, alias_name: str, required: bool = True) -> T | None:
    """The value of ``option`` given under its name or under its old spelling ``alias_name``, not both."""
    if value is not None and alias is not None and value != alias:
        raise BadInput(f"give {option} once ({alias_name} is its old spelling)")
    chosen = value if value is not None else alias
    if chosen is None and required:
        raise BadInput(f"give {option}")
    return chosen

