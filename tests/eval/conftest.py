"""Tiny random-initialised model artifacts for evaluation tests."""

from __future__ import annotations

import pytest
import torch

from medkd.zoo import create_model, save_model_artifact

TINY_SAM = {"embed_dim": 32, "depth": 1, "num_heads": 2, "global_attn_indexes": (0,), "window_size": 8}
TINY_UNET = {"channels": (4, 8, 16), "num_res_units": 0}


def _artifact(directory, name, kwargs, seed):
    torch.manual_seed(seed)
    save_model_artifact(create_model(name, **kwargs), directory, name=name, kind="model", model_kwargs=kwargs)
    return directory


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory):
    """A 256-px stand-in SAM with a one-block, 32-wide encoder."""
    return _artifact(tmp_path_factory.mktemp("tiny-sam"), "sam-vit-stand-in", TINY_SAM, 0)


@pytest.fixture(scope="session")
def other_tiny_sam(tmp_path_factory):
    return _artifact(tmp_path_factory.mktemp("other-sam"), "sam-vit-stand-in", TINY_SAM, 1)


@pytest.fixture(scope="session")
def tiny_unet(tmp_path_factory):
    return _artifact(tmp_path_factory.mktemp("tiny-unet"), "unet", TINY_UNET, 0)
