"""Package attributes imported on first use (PEP 562), so that importing a package stays cheap.

A package lists ``{name: module}`` and sets ``__all__, __getattr__ = lazy_exports(__name__, {...})``:
``from medkd.data import load_manifest`` then imports ``medkd.data.manifest`` only, and nothing that
needs torch unless the attribute asked for does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and a module ``__getattr__`` that imports ``exports[name]`` (a module path) and returns its ``name``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return sorted(exports), __getattr__
