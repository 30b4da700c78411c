"""Med-SA-style bottleneck adapters in a ViT encoder's attention blocks.

Each attention block (SAM ViT's ``Block``, TinyViT's ``TinyViTBlock``) gets an adapter after its attention: ``x + up(gelu(down(x)))`` with the up
projection initialised to zero, so an untrained adapter changes nothing. Adapters cannot be merged
into the base weights (they are non-linear), so an adapted model is carried as two state dicts: the
base model, which ``segment_anything``'s builders load as it is, and ``adapters.pt`` with only the
adapter weights; ``medkd.zoo.load_model`` puts both together.
"""

from __future__ import annotations

import torch
from torch import nn

ADAPTERS_FILE = "adapters.pt"


class Bottleneck(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class AdaptedAttention(nn.Module):
    """A block's attention followed by its adapter; ``attention`` keeps the original module."""

    def __init__(self, attention: nn.Module, adapter: Bottleneck) -> None:
        super().__init__()
        self.attention = attention
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.attention(x))


def attention_blocks(encoder: nn.Module) -> list[nn.Module]:
    """The blocks with self-attention of a SAM ViT (``blocks``) or a TinyViT (``layers[i].blocks``), in order."""
    if hasattr(encoder, "blocks"):
        return list(encoder.blocks)
    stages = getattr(encoder, "layers", [])
    return [block for stage in stages for block in getattr(stage, "blocks", []) if hasattr(block, "attn")]


def add_adapters(encoder: nn.Module, hidden: int) -> list[Bottleneck]:
    """Insert one adapter per attention block of ``encoder``; returns them in block order."""
    adapters = []
    for block in attention_blocks(encoder):
        adapter = Bottleneck(block.attn.qkv.in_features, hidden)
        block.attn = AdaptedAttention(block.attn, adapter)
        adapters.append(adapter)
    return adapters


def adapter_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter weights only, keyed ``blocks.<i>.<name>``."""
    return {
        f"blocks.{i}.{key}": value
        for i, block in enumerate(attention_blocks(encoder))
        for key, value in block.attn.adapter.state_dict().items()
    }


def base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with adapters taken out, in the keys of the unadapted architecture."""
    state = {}
    for key, value in model.state_dict().items():
        if ".attn.adapter." in key:
            continue
        state[key.replace(".attn.attention.", ".attn.")] = value
    return state


def load_adapters(encoder: nn.Module, state: dict[str, torch.Tensor]) -> None:
    hidden = state["blocks.0.down.weight"].shape[0]
    add_adapters(encoder, hidden)
    for i, block in enumerate(attention_blocks(encoder)):
        prefix = f"blocks.{i}."
        block.attn.adapter.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
