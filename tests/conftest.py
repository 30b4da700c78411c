"""Shared fixtures: where the real medical data lives, and whether its absence is an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``MEDKD_DATA`` if set, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("MEDKD_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; skipped when absent, except under CI where its absence fails."""
    path = shared_data_dir()
    if not path.is_dir():
        message = f"real medical data not found at {path} (set MEDKD_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


# A much smaller, faster configuration of recipes/teacher-stand-in.yaml for tests that need a teacher.
TINY_STAND_IN = {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": [1], "img_size": 64, "window_size": 2}
TINY_TRAIN = ["--steps", "4", "--batch-size", "2", "--checkpoint-every", "2"]


def tiny_adapt_args(data: Path, out: Path, *extra: str) -> list[str]:
    """``medkd adapt`` arguments for the tiny stand-in teacher on ``data``."""
    import json

    return [
        "adapt",
        "--recipe",
        str(REPO_ROOT / "recipes" / "teacher-stand-in.yaml"),
        "--model-kwargs",
        json.dumps(TINY_STAND_IN),
        "--data",
        str(data),
        "--out",
        str(out),
        *TINY_TRAIN,
        *extra,
    ]


@pytest.fixture(scope="session")
def synth_manifest_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic 2D and 3D phantoms indexed with train / val / test splits."""
    from medkd.data import build_manifest, make_synthetic, save_manifest

    root = tmp_path_factory.mktemp("synth-train") / "data"
    make_synthetic(root, images_2d=8, volumes_3d=3)
    path = root.parent / "synth.jsonl"
    save_manifest(build_manifest(root, progress=False), path)
    return path


@pytest.fixture(scope="session")
def tiny_teacher(synth_manifest_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in teacher recipe, tiny and short, trained once per test session."""
    from medkd.cli import run

    out = tmp_path_factory.mktemp("tiny-teacher") / "teacher"
    assert run(tiny_adapt_args(synth_manifest_train, out)) == 0
    return out


TINY_SAM = {"embed_dim": 32, "depth": 1, "num_heads": 2, "global_attn_indexes": (0,), "window_size": 8}
TINY_UNET = {"channels": (4, 8, 16), "num_res_units": 0}


def make_model_artifact(directory: Path, name: str, kwargs: dict, seed: int = 0) -> Path:
    """A random-initialised zoo model saved as a medkd model artifact."""
    import torch

    from medkd.zoo import create_model, default_preprocessing, save_model_artifact

    torch.manual_seed(seed)
    model, preprocessing = create_model(name, **kwargs), default_preprocessing(name, kwargs)
    save_model_artifact(model, directory, name=name, kind="model", model_kwargs=kwargs, preprocessing=preprocessing)
    return directory


@pytest.fixture(scope="session")
def ct_manifest(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CT organ slices of ../shared/data (4 images, 30 objects)."""
    from medkd.data import build_manifest, save_manifest

    path = tmp_path_factory.mktemp("ct") / "ct.jsonl"
    save_manifest(build_manifest(shared_data / "ct-organs", progress=False), path)
    return path
