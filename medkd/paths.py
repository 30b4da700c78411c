"""Where medkd keeps its caches: ``$MEDKD_CACHE_DIR``, else ``$XDG_CACHE_HOME/medkd``, else ``~/.cache/medkd``."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MEDKD_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "medkd"
