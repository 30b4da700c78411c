"""ONNX export of tiny SAM and U-Net students: layout, agreement with PyTorch, SamOnnxModel clients, eval."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from medkd.runtime.layout import read_layout
from PIL import Image

from medkd.artifacts import read_manifest, verify_files
from medkd.cli import run
from medkd.data import RowLoader, load_manifest

pytestmark = pytest.mark.data


def test_sam_export_writes_three_checked_graphs_and_its_layout(sam_export):
    manifest = read_manifest(sam_export, "export")
    assert set(manifest.files) == {"encoder.onnx", "decoder.onnx", "decoder_trt.onnx"} and verify_files(sam_export, manifest) == []
    layout = read_layout(sam_export)
    graphs = layout["graphs"]
    assert [i["name"] for i in graphs["decoder"]["inputs"]] == ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]
    assert [o["name"] for o in graphs["decoder"]["outputs"]] == ["masks", "iou_predictions", "low_res_masks"]
    assert graphs["encoder"]["inputs"] == [{"name": "image", "shape": ["batch", 3, 256, 256], "dtype": "float32"}]
    assert graphs["decoder_trt"]["inputs"][1] == {"name": "point_coords", "shape": ["prompts", 4, 2], "dtype": "float32"}
    assert [o["name"] for o in graphs["decoder_trt"]["outputs"]] == ["low_res_masks", "iou_predictions"]
    assert [o["shape"][0] for o in graphs["decoder_trt"]["outputs"]] == ["prompts", "prompts"]
    assert {g["opset"] for g in graphs.values()} == {17}
    assert layout["preprocessing"]["input_size"] == 256 and layout["preprocessing"]["pixel_mean"] == [123.675, 116.28, 103.53]
    assert layout["profiles"]["encoder"]["image"] == [[1, 3, 256, 256], [1, 3, 256, 256], [4, 3, 256, 256]]
    for name in manifest.files:
        onnx.checker.check_model(str(sam_export / name), full_check=True)
    report = manifest.metrics["validation"]
    assert report["samples"] == 2 and report["prompts"] == 4
    assert report["max_abs_logit_diff"] < 1e-4 and report["decoder_trt_max_abs_diff"] < 1e-4
    assert report["min_mask_dsc"] >= 0.99 and report["interface_masks_min_dsc"] >= 0.99


def test_export_refuses_when_agreement_misses_the_threshold(tiny_sam, ct_manifest, tmp_path, capsys):
    code = run(["export", "onnx", str(tiny_sam), "--out", str(tmp_path / "x"), "--data", str(ct_manifest), "--validate-samples", "1", "--max-logit-diff", "1e-12"])
    assert code == 1 and "disagree with PyTorch" in capsys.readouterr().err
    assert not (tmp_path / "x" / "manifest.json").exists() and not (tmp_path / "x" / "encoder.onnx").exists()


def test_bad_opset_is_bad_input(tiny_sam, ct_manifest, tmp_path, capsys):
    assert run(["export", "onnx", str(tiny_sam), "--out", str(tmp_path / "x"), "--data", str(ct_manifest), "--opset", "21"]) == 2
    assert "opset" in capsys.readouterr().err


def test_a_client_of_the_sam_onnx_interface_gets_medkd_segment_masks(sam_export, ct_manifest, tmp_path):
    """Plain onnxruntime with SamOnnxModel's inputs, as SAM's ONNX example does it: no medkd at all."""
    manifest = load_manifest(ct_manifest)
    row = manifest.rows[0]
    rgb = RowLoader(manifest).image(row)
    x0, y0, x1, y1 = row.box
    h, w = rgb.shape[:2]
    scale = 256 / max(h, w)
    new_h, new_w = int(h * scale + 0.5), int(w * scale + 0.5)
    resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR), np.float32)
    normalized = (resized - np.array([123.675, 116.28, 103.53], np.float32)) / np.array([58.395, 57.12, 57.375], np.float32)
    image = np.zeros((1, 3, 256, 256), np.float32)
    image[0, :, :new_h, :new_w] = normalized.transpose(2, 0, 1)
    encoder = ort.InferenceSession(str(sam_export / "encoder.onnx"), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(sam_export / "decoder.onnx"), providers=["CPUExecutionProvider"])
    embedding = encoder.run(None, {"image": image})[0]
    coords = np.array([[[x0 * new_w / w, y0 * new_h / h], [x1 * new_w / w, y1 * new_h / h]]], np.float32)
    masks, scores, low_res = decoder.run(
        None,
        {
            "image_embeddings": embedding,
            "point_coords": coords,
            "point_labels": np.array([[2, 3]], np.float32),
            "mask_input": np.zeros((1, 1, 64, 64), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([h, w], np.float32),
        },
    )
    assert masks.shape == (1, 4, h, w) and scores.shape == (1, 4) and low_res.shape == (1, 4, 64, 64)
    client = masks[0, 0] > 0
    source = manifest.resolve(row.image)
    out = tmp_path / "mask.png"
    assert run(["segment", "--model", str(sam_export), "--image", str(source), "--box", ",".join(str(v) for v in row.box), "--modality", "CT", "--out", str(out)]) == 0
    ours = np.asarray(Image.open(out)) > 0
    assert ours.any() or client.any()
    assert np.count_nonzero(ours != client) <= 0.001 * ours.size


def _eval(model, manifest, tmp_path, name):
    out = tmp_path / f"{name}.json"
    assert run(["eval", "--model", str(model), "--data", str(manifest), "--split", "val", "--limit", "6", "--out", str(out), "--no-cache"]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("which", ["sam", "unet"])
def test_eval_of_the_export_matches_the_torch_model(which, request, ct_manifest, tmp_path):
    source = request.getfixturevalue(f"tiny_{which}")
    export = request.getfixturevalue(f"{which}_export")
    torch_report = _eval(source, ct_manifest, tmp_path, "torch")
    onnx_report = _eval(export, ct_manifest, tmp_path, "onnx")
    assert onnx_report["config"]["model"]["name"] == torch_report["config"]["model"]["name"]
    torch_dsc = [o["dsc"] for o in torch_report["objects"]]
    onnx_dsc = [o["dsc"] for o in onnx_report["objects"]]
    assert len(onnx_dsc) == 6 and np.allclose(onnx_dsc, torch_dsc, atol=0.005)


def test_unet_export_is_one_graph_with_a_box_channel(unet_export):
    layout = read_layout(unet_export)
    assert list(layout["graphs"]) == ["unet"]
    assert layout["graphs"]["unet"]["inputs"] == [{"name": "image", "shape": ["batch", 4, 256, 256], "dtype": "float32"}]
    assert layout["graphs"]["unet"]["outputs"][0]["name"] == "logits" and layout["graphs"]["unet"]["outputs"][0]["shape"][0] == "batch"
    assert "box channel" in layout["prompts"]["format"]
    report = read_manifest(unet_export).metrics["validation"]
    assert report["max_abs_logit_diff"] < 1e-4 and report["min_mask_dsc"] >= 0.99


def test_gelu_approximate_replaces_erf(tiny_sam, ct_manifest, tmp_path):
    from tests.export.conftest import export_onnx

    out = export_onnx(tiny_sam, tmp_path / "tanh", ct_manifest, "--gelu-approximate", "--max-logit-diff", "0.05", "--min-dsc", "0.9")
    ops = {n.op_type for n in onnx.load(str(out / "encoder.onnx")).graph.node}
    assert "Erf" not in ops and "Tanh" in ops
    assert read_layout(out)["gelu_approximate"] is True


def test_logit_tolerance_scales_with_the_largest_logit():
    from medkd.export.validate import failures

    large = {"max_abs_logit_diff": 0.0114, "max_abs_logit": 200.0, "min_mask_dsc": 1.0}
    assert failures(large, 1e-3, 0.99) == []  # 0.0114 <= 1e-3 x 200
    small = {**large, "max_abs_logit": 5.0}
    assert failures(small, 1e-3, 0.99) == ["max_abs_logit_diff 0.0114 > 0.001 x largest logit 5"]
    assert failures({**large, "decoder_trt_max_abs_diff": 0.002}, 1e-3, 0.99) == ["decoder_trt_max_abs_diff 0.002 > 0.001"]
