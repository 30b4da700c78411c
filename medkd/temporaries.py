"""Temporaries that a killed process leaves behind, and their removal by the next run.

A temporary (file or directory) is made beside its destination under a dotted name and held under an
exclusive ``flock`` while its process works on it. The kernel drops the lock when the process ends,
however it ends (``kill -9`` included), so a temporary whose lock can be taken is stale:
:func:`remove_stale` deletes those and leaves alone the ones a running process still holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file or directory open as ``fd``."""
    try:
        here = path.lstat()
    except FileNotFoundError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _hold(make: Callable[[], Path]) -> tuple[int, Path]:
    """A temporary made by ``make``, open and locked. One that a cleaner removed before the lock was
    taken (it looked stale for that instant) is made again."""
    while True:
        path = make()
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _names(path, fd):
            return fd, path
        os.close(fd)


def _new_file(directory: Path, prefix: str, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def held_file(directory: Path, prefix: str, suffix: str = ".tmp") -> Iterator[Path]:
    """A new empty file ``directory/PREFIX*SUFFIX``, held while the block runs and removed after it
    (unless the block renamed it into place)."""
    fd, path = _hold(lambda: _new_file(directory, prefix, suffix))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def held_directory(directory: Path, prefix: str) -> Iterator[Path]:
    """A new empty directory ``directory/PREFIX*``, held while the block runs and removed with its
    contents after it."""
    fd, path = _hold(lambda: Path(tempfile.mkdtemp(prefix=prefix, dir=directory)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def remove_stale(directory: str | os.PathLike, patterns: Iterable[str]) -> list[Path]:
    """Delete the files and directories in ``directory`` matching a glob of ``patterns`` that no running
    process holds; the paths deleted."""
    root = Path(directory)
    if not root.is_dir():
        return []
    removed = []
    for path in sorted({path for pattern in patterns for path in root.glob(pattern)}):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:  # gone meanwhile, or a link: not a temporary of ours
            continue
        try:
            mode = os.fstat(fd).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held by a running process
            if not _names(path, fd):
                continue
            if stat.S_ISDIR(mode):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        finally:
            os.close(fd)
    return removed
