"""Parameter and FLOP counts of zoo models (``torch.utils.flop_counter``: FLOPs, 1 multiply-add = 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from medkd.zoo.registry import ModelSpec


@dataclass(frozen=True)
class ModelProfile:
    """Sizes and cost of one model at its input size."""

    encoder_params: int
    total_params: int
    encoder_gflops: float
    output_shape: tuple[int, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def encoder_of(model: nn.Module) -> nn.Module:
    """The part that runs once per image: a SAM's image encoder, or the whole U-Net."""
    return getattr(model, "image_encoder", model)


def input_channels(model: nn.Module) -> int:
    encoder = encoder_of(model)
    return getattr(encoder, "in_channels", 3)


def profile_model(spec: ModelSpec, **kwargs) -> ModelProfile:
    """Count parameters and encoder FLOPs for one image (batch 1) at the entry's input size.

    Entries that build on the meta device (the SAM ViTs) allocate no memory and compute nothing.
    """
    device = torch.device("meta" if spec.meta_buildable else "cpu")
    with device:
        model = spec.build(**kwargs)
    encoder = encoder_of(model)
    size = getattr(encoder, "img_size", spec.input_size)  # kwargs may change a SAM's input size
    image = torch.zeros(1, input_channels(model), size, size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        output = encoder.eval()(image)
    return ModelProfile(
        encoder_params=count_params(encoder),
        total_params=count_params(model),
        encoder_gflops=counter.get_total_flops() / 1e9,
        output_shape=tuple(output.shape[1:]),
    )
