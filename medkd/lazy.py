"""Package attributes imported on first use (PEP 562), so that importing a package stays cheap.

A package lists ``{name: module}`` and sets ``__getattr__ = lazy_attributes(__name__, EXPORTS)``:
``from medkd.data import load_manifest`` then imports ``medkd.data.manifest`` only, and nothing that
needs torch unless the attribute asked for does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module path) and returns its ``name``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
