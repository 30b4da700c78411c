"""A registry of model builders in the style of timm's ``create_model`` / ``list_models``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

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


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BadInput(f"unknown model '{name}'; known: {', '.join(_REGISTRY)}") from None
