"""Typed stage configurations from YAML recipes and flags, validated with errors that name the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from medkd.errors import BadInput

ConfigT = TypeVar("ConfigT")


def _check_value(where: str, value: Any, annotation: Any) -> Any:
    """Coerce ``value`` to ``annotation`` (int to float, list to tuple) or raise naming ``where``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(annotation):
            try:
                return _check_value(where, value, option)
            except BadInput as exc:
                errors.append(str(exc))
        raise BadInput(errors[-1])
    if annotation is type(None):
        if value is None:
            return None
        raise BadInput(f"{where}: expected nothing, got {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(annotation):
            return value
        raise BadInput(f"{where}: expected one of {', '.join(map(str, typing.get_args(annotation)))}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise BadInput(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        return origin(_check_value(f"{where}[{i}]", v, item) for i, v in enumerate(value))
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise BadInput(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is Path and isinstance(value, (str, Path)):
        return Path(value)
    if dataclasses.is_dataclass(annotation):
        return from_mapping(annotation, value, where)
    if isinstance(annotation, type) and isinstance(value, annotation) and not (annotation is int and isinstance(value, bool)):
        return value
    raise BadInput(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def from_mapping(cls: type[ConfigT], values: Mapping[str, Any], where: str = "config") -> ConfigT:
    """Build dataclass ``cls`` from ``values``; unknown keys and wrong types name the bad key."""
    if not isinstance(values, Mapping):
        raise BadInput(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BadInput(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(fields)})")
    kwargs = {name: _check_value(f"{where}.{name}", value, hints[name]) for name, value in values.items()}
    missing = [
        name
        for name, field in fields.items()
        if name not in kwargs and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise BadInput(f"{where}: missing key '{missing[0]}'")
    return cls(**kwargs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with a one-line error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"recipe not found: {path}")
    import yaml  # the training install's: the runtime reads no recipes

    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BadInput(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(loaded, dict):
        raise BadInput(f"{path} must hold a mapping at the top level")
    return loaded


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` (flags that were given, ``None`` meaning not given) on top of ``base``."""
    return {**base, **{key: value for key, value in overrides.items() if value is not None}}
