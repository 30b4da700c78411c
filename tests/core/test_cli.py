"""CLI conventions: --help everywhere, --version, exit codes, one-line errors unless --debug."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer

from medkd import __version__
from medkd.cli import app, run


def command_paths(group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


@pytest.mark.parametrize("path", command_paths(typer.main.get_command(app)), ids=" ".join)
def test_help_everywhere(path: tuple[str, ...], capsys: pytest.CaptureFixture) -> None:
    assert run([*path, "--help"]) == 0
    assert "Usage:" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"medkd {__version__}"


def test_bad_input_is_one_line_with_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert run(["models", "show", "sam-vit-x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'sam-vit-x'")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_unknown_option_is_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert run(["models", "--colour"]) == 2


def test_debug_shows_the_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "medkd", "--debug", "models", "show", "sam-vit-x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "BadInput" in result.stderr


def test_models_json_lists_every_entry(capsys: pytest.CaptureFixture) -> None:
    assert run(["models", "--json"]) == 0
    entries = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert entries["sam-vit-h"]["checkpoint"]["sha256"].startswith("a7bf3b02")
    assert entries["tinyvit-256"]["output_shape"] == [256, 16, 16]
    assert entries["unet"]["role"] == "student"


def test_models_table(capsys: pytest.CaptureFixture) -> None:
    assert run(["models", "--role", "teacher"]) == 0
    out = capsys.readouterr().out
    assert "sam-vit-h" in out and "637.03M" in out and "5961.1" in out
    assert "tinyvit-256" not in out


def test_an_error_keeps_its_brackets(capsys: pytest.CaptureFixture) -> None:
    """Messages are printed as written: rich markup does not eat ``[train]`` or ``x,y[,label]``."""
    assert run(["segment", "-m", "x", "-i", __file__, "--point", "a,b", "-o", "m.png"]) == 2
    assert capsys.readouterr().err == "error: --point must be x,y[,label] with label 1 (object) or 0 (background), not 'a,b'\n"
