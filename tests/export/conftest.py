"""Tiny model artifacts, a real-data manifest and exports made once per session."""

from __future__ import annotations

import pytest

from medkd.cli import run
from medkd.data import build_manifest, save_manifest
from tests.conftest import TINY_SAM, TINY_UNET, make_model_artifact


@pytest.fixture(scope="session")
def hippocampus_manifest(shared_data, tmp_path_factory):
    """Two hippocampus MRI volumes (NIfTI) of ../shared/data."""
    root = tmp_path_factory.mktemp("hippo") / "data"
    source = shared_data / "hippocampus-mri"
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
        for path in sorted((source / folder).glob("*.nii.gz"))[:2]:
            (root / folder / path.name).symlink_to(path)
    (root / "dataset.json").symlink_to(source / "dataset.json")
    path = root.parent / "hippo.jsonl"
    save_manifest(build_manifest(root, progress=False), path)
    return path


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory):
    return make_model_artifact(tmp_path_factory.mktemp("tiny-sam") / "student", "sam-vit-stand-in", TINY_SAM)


@pytest.fixture(scope="session")
def tiny_unet(tmp_path_factory):
    return make_model_artifact(tmp_path_factory.mktemp("tiny-unet") / "student", "unet", TINY_UNET)


def export_onnx(source, out, manifest, *extra):
    code = run(["export", "onnx", str(source), "--out", str(out), "--data", str(manifest), "--split", "all", "--validate-samples", "2", *extra])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def sam_export(tiny_sam, ct_manifest, tmp_path_factory):
    return export_onnx(tiny_sam, tmp_path_factory.mktemp("sam-export") / "export", ct_manifest)


@pytest.fixture(scope="session")
def unet_export(tiny_unet, ct_manifest, tmp_path_factory):
    return export_onnx(tiny_unet, tmp_path_factory.mktemp("unet-export") / "export", ct_manifest)
