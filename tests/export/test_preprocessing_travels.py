"""The preprocessing spec travels with every export: layout, ONNX metadata_props, and a client without medkd."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medkd.artifacts import read_manifest, write_manifest
from medkd.data import ArrayCache, RowLoader, load_manifest
from medkd.data.preprocessing import METADATA_KEY, Preprocessing, PreprocessingWarning
from medkd.export.onnx_stage import OnnxOptions, export_onnx_artifact
from medkd.runtime.layout import PROMPTS_KEY, read_layout, read_metadata
from medkd.runtime.onnx_runtime import OnnxSegmenter
from medkd.runtime.prompts import Prompts
from medkd.zoo import create_model, default_preprocessing, save_model_artifact
from tests.conftest import TINY_SAM, TINY_UNET, make_model_artifact

pytestmark = pytest.mark.data

CLIENT = Path(__file__).with_name("client_script.py")
TINYVIT = {"img_size": 64, "embedding_grid": 4}
OPTIONS = OnnxOptions(validate_samples=2, split=None)  # type: ignore[arg-type]  (None: every split, as --split all)


def _export(directory: Path, name: str, kwargs: dict, spec: Preprocessing | None, data: Path) -> Path:
    torch.manual_seed(0)
    save_model_artifact(create_model(name, **kwargs), directory / "student", name=name, kind="model", model_kwargs=kwargs, preprocessing=spec)
    export_onnx_artifact(str(directory / "student"), directory / "export", data, OPTIONS)
    return directory / "export"


SPECS = {
    "sam-longest-box": ("sam-vit-stand-in", TINY_SAM, lambda: replace(default_preprocessing("sam-vit-stand-in", TINY_SAM), crop="box")),
    "litemedsam-unit-stretch": ("tinyvit-256", TINYVIT, lambda: Preprocessing(64, 16, "unit", "stretch", embedding_grid=4)),
}


@pytest.mark.parametrize("case", list(SPECS))
def test_a_client_without_medkd_reproduces_the_mask_logits_from_the_onnx_metadata(case, ct_manifest, tmp_path):
    """Model-space comparison: the client's crop window equals medkd's, its low-res mask logits (1, M, M)
    match ``OnnxSegmenter`` on medkd's own model input within 1e-4, on real CT slices."""
    name, kwargs, make_spec = SPECS[case]
    spec = make_spec()
    export = _export(tmp_path, name, kwargs, spec, ct_manifest)
    layout = read_layout(export)
    assert layout["preprocessing"] == spec.to_dict() and layout["preprocessing"]["crop"] == spec.crop
    for entry in layout["graphs"].values():
        metadata = read_metadata(export / entry["file"])
        assert Preprocessing.from_dict(json.loads(metadata[METADATA_KEY])) == spec
        assert json.loads(metadata[PROMPTS_KEY]) == layout["prompts"]
    client = tmp_path / "client.py"
    shutil.copy(CLIENT, client)
    assert "medkd" not in "".join(line for line in client.read_text().splitlines() if line.startswith(("import", "from")))
    segmenter = OnnxSegmenter(export)
    manifest = load_manifest(ct_manifest)
    loader = RowLoader(manifest, ArrayCache(None))
    for row in (manifest.rows[i] for i in (3, 20)):
        rgb = loader.image(row)
        Image.fromarray(rgb).save(tmp_path / "image.png")
        out = tmp_path / "client.npz"
        box = ",".join(str(v) for v in row.box)
        subprocess.run([sys.executable, str(client), str(export), str(tmp_path / "image.png"), box, str(out)], check=True, cwd=tmp_path)
        result = np.load(out)
        geometry = segmenter.preprocessing.plan(rgb.shape[:2], np.asarray(row.box))
        expected = segmenter(geometry.image_to_model(rgb)[None], [Prompts(boxes=geometry.boxes_to_model(np.array([row.box])))])[0].numpy()
        assert tuple(result["region"]) == geometry.region
        assert result["logits"].shape == expected.shape == (1, spec.mask_size, spec.mask_size)
        assert np.abs(result["logits"] - expected).max() < 1e-4


def test_an_old_model_artifact_exports_with_its_architecture_default_and_a_warning(ct_manifest, tmp_path):
    student = make_model_artifact(tmp_path / "student", "unet", TINY_UNET)
    manifest = read_manifest(student)
    manifest.config.pop("preprocessing", None)  # as artifacts written before specs
    write_manifest(student, manifest)
    with pytest.warns(PreprocessingWarning, match="records no preprocessing spec"):
        export_onnx_artifact(str(student), tmp_path / "export", ct_manifest, OPTIONS)
    default = default_preprocessing("unet", TINY_UNET)
    assert read_layout(tmp_path / "export")["preprocessing"] == default.to_dict() and default.crop == "none"
    assert json.loads(read_metadata(tmp_path / "export" / "unet.onnx")[METADATA_KEY]) == default.to_dict()


def test_an_old_export_layout_opens_with_the_default_and_a_warning(unet_export, tmp_path):
    old = tmp_path / "old-export"
    shutil.copytree(unet_export, old)
    manifest = read_manifest(old)
    manifest.config["export"]["preprocessing"] = {"input_size": 256, "resize": "longest side to input_size", "crop": "none"}
    write_manifest(old, manifest)
    with pytest.warns(PreprocessingWarning, match="records no preprocessing spec"):
        segmenter = OnnxSegmenter(old)
    assert segmenter.preprocessing == default_preprocessing("unet", TINY_UNET) and segmenter.input_size == 256
