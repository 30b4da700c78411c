"""CUDA, through torch where the training install has it: the runtime install has neither."""

from __future__ import annotations

import importlib.util
from types import ModuleType


def torch_cuda() -> ModuleType | None:
    """``torch.cuda`` when torch is installed and sees a GPU, else ``None``."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.cuda if torch.cuda.is_available() else None
