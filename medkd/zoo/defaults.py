"""The preprocessing a model artifact or zoo entry runs with: recorded, or the architecture's default."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from medkd.artifacts import read_manifest
from medkd.data.preprocessing import Preprocessing, PreprocessingWarning, is_spec
from medkd.zoo.registry import get_spec, split_model_ref


def default_preprocessing(name: str, kwargs: dict[str, Any] | None = None) -> Preprocessing:
    """The architecture's own preprocessing: its input size, grid, normalisation and resize, no crop."""
    spec = get_spec(name)
    arguments = {**spec.defaults, **split_model_ref(name)[1], **(kwargs or {})}
    size = int(arguments.get("img_size", spec.input_size))
    if spec.family == "unet":
        return Preprocessing(size, size, spec.normalization, spec.resize)
    grid = int(arguments.get("embedding_grid") or size // 16)
    return Preprocessing(size, 4 * grid, spec.normalization, spec.resize, embedding_grid=grid)


def trained_preprocessing(name: str, kwargs: dict[str, Any], crop: str, checkpoint: str | None = None) -> Preprocessing:
    """What a model of ``name`` trains with here: its starting artifact's (or architecture's) spec with ``crop``."""
    start = Path(checkpoint) if checkpoint else None
    base = model_preprocessing(start) if start is not None and start.is_dir() else default_preprocessing(name, kwargs)
    return replace(base, crop=crop)  # type: ignore[arg-type]


def recorded_preprocessing(section: dict[str, Any], source: str) -> Preprocessing:
    """The spec a manifest section records (a model manifest's ``config``, an export layout: both name
    the ``model`` beside its ``preprocessing``); for one older than specs, the default and a warning."""
    recorded, model = section.get("preprocessing"), section["model"]
    if is_spec(recorded):
        return Preprocessing.from_dict(recorded)  # type: ignore[arg-type]
    warnings.warn(
        f"{source} records no preprocessing spec: using {split_model_ref(model['name'])[0]}'s default (no crop)",
        PreprocessingWarning,
        stacklevel=2,
    )
    return default_preprocessing(model["name"], model.get("kwargs", {}))


def model_preprocessing(reference: str | Path) -> Preprocessing:
    """What a zoo name or medkd model artifact directory runs with."""
    if not Path(reference).is_dir():
        return default_preprocessing(str(reference))
    return recorded_preprocessing(read_manifest(reference).config, str(reference))
