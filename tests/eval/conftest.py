"""Tiny random-initialised model artifacts for evaluation tests."""

from __future__ import annotations

import pytest

from tests.conftest import TINY_SAM, TINY_UNET, make_model_artifact


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory):
    """A 256-px stand-in SAM with a one-block, 32-wide encoder."""
    return make_model_artifact(tmp_path_factory.mktemp("tiny-sam"), "sam-vit-stand-in", TINY_SAM, 0)


@pytest.fixture(scope="session")
def other_tiny_sam(tmp_path_factory):
    return make_model_artifact(tmp_path_factory.mktemp("other-sam"), "sam-vit-stand-in", TINY_SAM, 1)


@pytest.fixture(scope="session")
def tiny_unet(tmp_path_factory):
    return make_model_artifact(tmp_path_factory.mktemp("tiny-unet"), "unet", TINY_UNET, 0)
