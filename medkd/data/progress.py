"""Rich progress bars on stderr for long loops (indexing, preprocessing, evaluation), on a terminal only:
a log file or a pipe gets no bars, so a failing command leaves its one error line alone."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def _columns() -> tuple:
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())


def track(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while showing a bar of ``total`` steps (nothing when ``enabled`` is false or stderr
    is not a terminal)."""
    console = Console(stderr=True)
    with Progress(*_columns(), console=console, disable=not (enabled and console.is_terminal), transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A bar of ``total`` steps while the block runs; yields ``advance(steps)`` (a bar only where
    ``enabled`` and stderr is a terminal, as :func:`track`)."""
    console = Console(stderr=True)
    with Progress(*_columns(), console=console, disable=not (enabled and console.is_terminal), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda steps: progress.advance(task, steps)
