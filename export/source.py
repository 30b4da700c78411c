"""The model an export starts from: a medkd model artifact directory or a zoo name (+ checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from medkd.artifacts import ArtifactInput, as_input, sha256_file
from medkd.errors import BadInput
from medkd.runtime.segmenter import Segmenter, load_segmenter
from medkd.zoo import get_spec
from medkd.zoo.artifact import artifact_model_ref


@dataclass
class ExportSource:
    """The torch model to export, how it was built, and where it came from."""

    segmenter: Segmenter
    kwargs: dict[str, Any]
    inputs: list[ArtifactInput]

    @property
    def module(self) -> nn.Module:
        return self.segmenter.module

    @property
    def embedding_grid(self) -> int | None:
        if self.segmenter.family != "sam":
            return None
        return int(self.module.prompt_encoder.image_embedding_size[0])


def load_source(reference: str, checkpoint: str | None = None) -> ExportSource:
    """Load ``reference`` on the CPU in eval mode, with the provenance the export manifest records."""
    segmenter = load_segmenter(reference, checkpoint, "cpu")
    if Path(reference).is_dir():
        kwargs = artifact_model_ref(reference)[1]
        inputs = [as_input(reference)]
    else:
        get_spec(reference)
        kwargs = {}
        inputs = [] if checkpoint is None else [ArtifactInput("checkpoint", str(checkpoint), sha256_file(checkpoint))]
    if not isinstance(segmenter, Segmenter):
        raise BadInput(f"{reference} is already an exported model; export starts from a torch model")
    return ExportSource(segmenter, kwargs, inputs)
