"""Model artifacts: a directory with the weights (a plain state dict) and a manifest that names the
zoo architecture and its arguments, so ``load_model`` rebuilds it without any pickled code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medkd.artifacts import (
    ArtifactInput,
    Manifest,
    atomic_path,
    hash_files,
    read_manifest,
    write_manifest,
)
from medkd.data.preprocessing import Preprocessing
from medkd.errors import BadInput
from medkd.zoo.adapters import ADAPTERS_FILE, adapter_state, base_state, load_adapters
from medkd.zoo.checkpoints import load_checkpoint, packaged_checkpoint, read_state_dict
from medkd.zoo.registry import get_spec, split_model_ref

WEIGHTS_FILE = "model.pt"


def save_model_artifact(
    model: nn.Module,
    out_dir: str | Path,
    *,
    name: str,
    kind: str,
    model_kwargs: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    inputs: list[ArtifactInput] | None = None,
    metrics: dict[str, Any] | None = None,
    preprocessing: Preprocessing | None = None,
) -> Manifest:
    """Write ``model``'s state dict and a manifest (last, atomically) into ``out_dir``.

    ``name`` may carry builder arguments (``tinyvit-256:embedding_grid=64``); they are stored with
    ``model_kwargs``. ``preprocessing`` is what the model was trained with (``config.preprocessing``).
    A model with adapters is written as its base state dict plus ``adapters.pt`` (see
    ``medkd.zoo.adapters``).
    """
    out = Path(out_dir)
    get_spec(name)
    name, ref_kwargs = split_model_ref(name)
    model_kwargs = {**ref_kwargs, **(model_kwargs or {})}
    weights = {WEIGHTS_FILE: base_state(model)}
    encoder = getattr(model, "image_encoder", None)
    if encoder is not None and any(".attn.adapter." in key for key in model.state_dict()):
        weights[ADAPTERS_FILE] = adapter_state(encoder)
    for filename, state in weights.items():
        with atomic_path(out / filename) as tmp:
            torch.save(state, tmp)
    manifest = Manifest(
        kind=kind,
        config={
            "model": {"name": name, "kwargs": model_kwargs},
            **({"preprocessing": preprocessing.to_dict()} if preprocessing is not None else {}),
            **(config or {}),
        },
        inputs=inputs or [],
        files=hash_files(out, list(weights)),
        metrics=metrics or {},
    )
    return write_manifest(out, manifest)


def artifact_model_ref(directory: str | Path) -> tuple[str, dict[str, Any], Path, str]:
    """Zoo name, builder arguments, weights path and weights SHA-256 of a model artifact."""
    manifest = read_manifest(directory)
    model = manifest.config.get("model")
    if not isinstance(model, dict) or "name" not in model or WEIGHTS_FILE not in manifest.files:
        raise BadInput(f"{directory} is a '{manifest.kind}' artifact without model weights")
    return model["name"], dict(model.get("kwargs", {})), Path(directory) / WEIGHTS_FILE, manifest.files[WEIGHTS_FILE]


def architecture_kwargs(name: str, checkpoint: str | Path | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The builder arguments a model is made with: those of its name, of its artifact, then ``kwargs``."""
    saved = artifact_model_ref(checkpoint)[1] if checkpoint is not None and Path(checkpoint).is_dir() else {}
    return {**split_model_ref(name)[1], **saved, **kwargs}


def create_model(
    name: str,
    checkpoint: str | Path | None = None,
    sha256: str | None = None,
    pretrained: bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo model in eval mode: random init, ``checkpoint`` loaded strictly, or the packaged weights.

    ``name`` may carry builder arguments (``tinyvit-256:embedding_grid=64``). ``checkpoint`` may be an
    official state dict or a medkd model artifact directory (whose saved architecture arguments and
    adapters apply). The SHA-256 is verified when given, or when the file carries the entry's
    published name and hash. An entry whose weights come with an installed package (``litemedsam``)
    loads them unless ``pretrained=False``.
    """
    spec = get_spec(name)
    kwargs = {**split_model_ref(name)[1], **kwargs}
    artifact = Path(checkpoint) if checkpoint is not None and Path(checkpoint).is_dir() else None
    if artifact is not None:
        _, saved_kwargs, checkpoint, sha256 = artifact_model_ref(artifact)
        kwargs = {**saved_kwargs, **kwargs}
    elif checkpoint is None and (spec.packaged if pretrained is None else pretrained):
        if not spec.packaged:
            raise BadInput(f"{spec.name} has no packaged weights: pass a checkpoint")
        checkpoint = packaged_checkpoint(spec.checkpoint)  # type: ignore[arg-type]
    model = spec.build(**kwargs)
    if checkpoint is not None:
        known = spec.checkpoint
        if sha256 is None and known is not None and known.sha256 and Path(checkpoint).name == known.filename:
            sha256 = known.sha256
        load_checkpoint(model, checkpoint, sha256, spec.unused_keys)
    if artifact is not None:
        files = read_manifest(artifact).files
        if ADAPTERS_FILE in files:
            load_adapters(model.image_encoder, read_state_dict(artifact / ADAPTERS_FILE, files[ADAPTERS_FILE]))
    return model.eval()


def load_model(source: str | Path, **kwargs: Any) -> nn.Module:
    """A model from a zoo name (random init) or a medkd model artifact directory."""
    if not Path(source).is_dir():
        return create_model(str(source), **kwargs)
    return create_model(artifact_model_ref(source)[0], checkpoint=source, **kwargs)
