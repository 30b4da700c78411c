"""Content-addressed cache of decoded, normalised arrays so that repeated epochs skip decoding.

A key is a JSON value naming the source file (resolved path, mtime in ns and size), what was
computed from it and with which parameters; its SHA-256 names a ``.npy`` file under the cache
directory, written atomically. The directory is ``$MEDKD_CACHE_DIR``, else
``$XDG_CACHE_HOME/medkd``, else ``~/.cache/medkd`` (with a ``preprocess`` subfolder). Entries are
renamed into place but not fsync'ed: an entry torn by a crash fails to load and is recomputed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medkd.artifacts import sha256_json
from medkd.paths import cache_dir

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """Where the preprocessing cache lives unless told otherwise."""
    return cache_dir() / "preprocess"


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Resolved path, modification time and size: changes whenever the file is replaced or edited."""
    resolved = Path(path).resolve()
    if resolved.is_dir():
        stats = [child.stat() for child in sorted(resolved.iterdir())]
        return {"path": str(resolved), "mtime_ns": max(s.st_mtime_ns for s in stats), "size": sum(s.st_size for s in stats)}
    stat = resolved.stat()
    return {"path": str(resolved), "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}


class ArrayCache:
    """Get-or-compute of numpy arrays keyed by JSON values; ``directory=None`` disables storage."""

    def __init__(self, directory: str | os.PathLike | None) -> None:
        self.directory = Path(directory) if directory is not None else None

    def path_for(self, key: Any) -> Path | None:
        if self.directory is None:
            return None
        digest = sha256_json({"format": CACHE_FORMAT, "key": key})
        return self.directory / digest[:2] / f"{digest}.npy"

    def get(self, key: Any, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array for ``key``, computing and storing it on a miss (or a corrupt entry)."""
        path = self.path_for(key)
        if path is not None and path.is_file():
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError):
                path.unlink(missing_ok=True)
        array = compute()
        if path is not None:
            _store(path, array)
        return array


def _store(path: Path, array: np.ndarray) -> None:
    """Write ``array`` beside ``path`` and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
