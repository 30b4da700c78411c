"""A registry of model builders in the style of timm's ``create_model`` / ``list_models``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from torch import nn

from medkd.errors import BadInput

Role = Literal["teacher", "student"]
Family = Literal["sam", "unet"]


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a model's published weights come from."""

    filename: str
    url: str | None = None
    sha256: str | None = None
    note: str = ""
    size: int | None = None
    package: str | None = None  # an installed package that ships the file (read with importlib.resources)


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry: how to build the architecture and what it expects."""

    name: str
    role: Role
    family: Family
    input_size: int
    builder: Callable[..., nn.Module]
    description: str
    checkpoint: CheckpointInfo | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    meta_buildable: bool = False
    # Checkpoint keys the architecture has but never uses (TinyViT's classification head): the only
    # keys a checkpoint may lack.
    unused_keys: tuple[str, ...] = ()
    normalization: Literal["sam", "minmax", "unit"] = "sam"
    resize: Literal["longest", "stretch"] = "longest"

    @property
    def packaged(self) -> bool:
        """Whether the published weights come with an installed package (loaded by default)."""
        return self.checkpoint is not None and self.checkpoint.package is not None

    def build(self, **kwargs: Any) -> nn.Module:
        """Build with random initialisation; ``kwargs`` override the entry's defaults."""
        return self.builder(**{**self.defaults, **kwargs})


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model '{spec.name}' is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def list_models(role: Role | None = None) -> list[str]:
    """Registered names in registration order, optionally only teachers or students."""
    return [name for name, spec in _REGISTRY.items() if role is None or spec.role == role]


def split_model_ref(ref: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value,key=value`` (values read as YAML scalars) to the name and kwargs."""
    name, _, arguments = str(ref).partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, arguments.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise BadInput(f"model '{ref}': arguments must be key=value, not '{item}'")
        kwargs[key.strip()] = yaml.safe_load(value)
    return name, kwargs


def get_spec(ref: str) -> ModelSpec:
    """The entry of a zoo name (arguments after ``:`` are ignored here)."""
    name = split_model_ref(ref)[0]
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BadInput(f"unknown model '{name}'; known: {', '.join(_REGISTRY)}") from None
