"""Consoles for the CLI: tables keep their width when piped to a file or another program."""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 160


def stdout_console() -> Console:
    """A console on stdout, 160 columns wide when stdout is not a terminal."""
    return Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)
