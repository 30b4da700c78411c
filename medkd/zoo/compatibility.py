"""Whether a checkpoint also loads into an upstream SAM library's builder, and whether that builder
runs it at the geometry it was made for (input size, embedding grid, patch stem)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from medkd.zoo.checkpoints import StateDictReport, _grouped
from medkd.zoo.models import TINYVIT_HEAD

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class ModelGeometry:
    """What a SAM model runs at: input pixels, embedding grid, and the stride of its patch stem."""

    input_size: int
    grid: int
    stem_stride: int

    def __str__(self) -> str:
        return f"{self.input_size} px / {self.grid} x {self.grid} grid, stride-{self.stem_stride} stem"


@dataclass(frozen=True)
class Upstream:
    """One upstream builder: ``library.sam_model_registry[name]``."""

    library: str
    name: str
    geometry: ModelGeometry
    # Keys the upstream model has and a checkpoint may leave out (TinyViT's classification head).
    optional: tuple[str, ...] = ()
    # Built on the meta device (no memory); mobile_sam's TinyViT calls .item() while building.
    meta: bool = True

    @property
    def label(self) -> str:
        return f"{self.library} {self.name}"

    def shapes(self) -> Shapes:
        return _upstream_shapes(self.library, self.name, self.meta)


_SAM_VIT = ModelGeometry(1024, 64, 16)
UPSTREAM = (
    Upstream("mobile_sam", "vit_t", ModelGeometry(1024, 64, 4), TINYVIT_HEAD, meta=False),
    Upstream("segment_anything", "vit_b", _SAM_VIT),
    Upstream("segment_anything", "vit_l", _SAM_VIT),
    Upstream("segment_anything", "vit_h", _SAM_VIT),
)


@functools.cache
def _upstream_shapes(library: str, name: str, meta: bool) -> Shapes:
    """Key -> shape of an upstream builder's model, built on the meta device where it can be."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry: Mapping[str, Callable[..., nn.Module]] = __import__(library).sam_model_registry
        with torch.device("meta" if meta else "cpu"):
            model = registry[name]()
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def model_geometry(model: nn.Module) -> ModelGeometry | None:
    """A SAM model's input size, embedding grid and stem stride (``None`` for other families)."""
    encoder, prompt = getattr(model, "image_encoder", None), getattr(model, "prompt_encoder", None)
    if encoder is None or prompt is None:
        return None
    patch = encoder.patch_embed
    # SAM's ViT: one strided convolution; TinyViT: convolutions down to ``patches_resolution``.
    stride = patch.proj.stride[0] if hasattr(patch, "proj") else encoder.img_size // patch.patches_resolution[0]
    return ModelGeometry(int(encoder.img_size), int(prompt.image_embedding_size[0]), int(stride))


def compare_shapes(state: Shapes, upstream: Upstream) -> StateDictReport | None:
    """Differences from ``upstream``'s state dict, or ``None`` when the key sets differ (beyond its optional keys)."""
    expected = upstream.shapes()
    missing = sorted(set(expected) - set(state))
    if set(state) - set(expected) or any(not key.startswith(upstream.optional) for key in missing):
        return None
    misshaped = [(key, expected[key], state[key]) for key in sorted(state) if state[key] != expected[key]]
    return StateDictReport(missing=missing, misshaped=misshaped)


def upstream_notes(state: Mapping[str, torch.Tensor], geometry: ModelGeometry | None) -> list[tuple[bool, str]]:
    """For each upstream builder whose keys ``state`` has: (is a warning, one line saying what happens there)."""
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    notes = []
    for upstream in UPSTREAM:
        report = compare_shapes(shapes, upstream)
        if report is not None:
            notes.append(_note(upstream, report, geometry))
    return notes


def _note(upstream: Upstream, report: StateDictReport, geometry: ModelGeometry | None) -> tuple[bool, str]:
    target = f"{upstream.library}.sam_model_registry['{upstream.name}']"
    if report.misshaped:
        return True, (
            f"has {upstream.label}'s keys, but not its shapes ({len(report.misshaped)} differ: "
            f"{_grouped([key for key, _, _ in report.misshaped], 3)}): it does not load into {target}"
        )
    if report.missing:
        return True, (
            f"has {upstream.label}'s keys but lacks {_grouped(report.missing, 3)}: {target} loads it only with strict=False"
        )
    if geometry is not None and geometry != upstream.geometry:
        return True, (
            f"fits {upstream.label} by keys, but {upstream.name} runs at {upstream.geometry}; "
            f"this model is {geometry}: masks from {upstream.name} would be wrong"
        )
    return False, f"loads into {target} unchanged ({upstream.geometry})"
