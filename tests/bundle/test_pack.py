"""``medkd pack``: what a bundle holds for each target, its manifest and model card; bad input."""

from __future__ import annotations

import json
import signal
import shutil
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from medkd.artifacts import (
    Manifest,
    as_input,
    hash_files,
    read_manifest,
    sha256_file,
    write_manifest,
)
from medkd.bundle.schema import parse_manifest
from medkd.bundle.signing import fingerprint, load_private_key
from medkd.bundle.variants import RunArtifact, onnx_precision
from medkd.cli import run
from tests.bundle.conftest import add_engines, pack, read_members

pytestmark = pytest.mark.data


def bundle_manifest(bundle):
    members = {info.name: data for info, data in read_members(bundle)}
    return parse_manifest(members["manifest.json"]), members


def test_bundle_records_files_tensors_provenance_licences_and_accuracy(unet_bundle, unet_run, signing_key):
    manifest, members = bundle_manifest(unet_bundle)
    export = read_manifest(unet_run / "export")
    (variant,) = manifest.variants
    assert (variant.name, variant.format, variant.precision, variant.opset) == ("onnx-fp32", "onnx", "fp32", 17)
    assert manifest.files["variants/onnx-fp32/unet.onnx"] == export.files["unet.onnx"]
    assert manifest.files["variants/onnx-fp32/manifest.json"] == sha256_file(unet_run / "export" / "manifest.json")
    assert set(members) == {*manifest.files, "manifest.json", "manifest.sig"}
    assert manifest.sizes == {name: len(members[name]) for name in manifest.files} and manifest.schema == 3
    (graph,) = variant.graphs
    assert (graph.file, graph.runtime) == ("unet.onnx", "onnx")
    assert [(t.name, t.shape, t.dtype) for t in graph.inputs] == [("image", ["batch", 4, 256, 256], "float32")]
    assert variant.validation["min_mask_dsc"] >= 0.99 and variant.onnxruntime == export.software["onnxruntime"]
    assert (manifest.model.id, manifest.model.version, manifest.model.architecture) == ("unet", "1.2.0", "unet")
    assert manifest.preprocessing["input_size"] == 256 and "box channel" in manifest.prompts["format"]
    assert [n.kind for n in manifest.provenance] == ["export", "model", "data-manifest"] and all(n.found for n in manifest.provenance)
    assert manifest.provenance[0].id == export.id
    (data,) = manifest.data
    assert (data.dataset, data.modality, data.licences) == ("ct-organs", "CT", ["Apache-2.0", "CC-BY-4.0"])
    assert "TotalSegmentator" in data.attribution and b"Attribution 4.0" in members["data/ct-organs/LICENSE-CC-BY-4.0.txt"]
    report = json.loads((unet_run / "eval-export.json").read_text())["summary"]
    (accuracy,) = manifest.accuracy
    assert (accuracy.model, accuracy.artifact_id, accuracy.split) == ("export", export.id, "test")
    assert accuracy.by_dataset["ct-organs"]["dsc"] == report["by_dataset"]["ct-organs"]["dsc"]["mean"]
    assert accuracy.by_dataset["ct-organs"]["n"] == report["overall"]["dsc"]["n"] == 3
    assert manifest.signer == fingerprint(load_private_key(signing_key).public_key())
    card = members["MODEL_CARD.md"].decode()
    for section in ("## Intended use", "## Training and evaluation data", "## Metrics", "## Limitations", "## Provenance"):
        assert section in card
    assert f"{accuracy.by_dataset['ct-organs']['dsc']:.4f}" in card and "CC-BY-4.0" in card
    bench = json.loads((unet_run / "bench-ort.json").read_text())
    (latency,) = manifest.latency
    assert latency == {"source": "bench-ort.json", **bench}
    p50 = bench["entries"][0]["latency_ms"]["p50"]
    assert f"| unet | ort | unet | fp32 | 1 | {bench['entries'][0]['threads']} | {p50:.4f} |" in card


def test_an_export_directory_packs_on_its_own(unet_run, tmp_path):
    manifest, _ = bundle_manifest(pack(unet_run / "export", tmp_path / "export-only.medkd"))
    assert [v.name for v in manifest.variants] == ["onnx-fp32"] and manifest.signer is None
    assert manifest.model.version == read_manifest(unet_run / "export").id and manifest.accuracy == []


QUANT_REPORT = {
    "precision": "int8",
    "calibration": {"crop": "none"},
    "accuracy": {"test": {"fp32": {"dsc": 0.8, "nsd": 0.7}, "int8": {"dsc": 0.79, "nsd": 0.69}, "dsc_drop": 0.01, "nsd_drop": 0.01, "objects": 3}},
    "latency": {"threads": 2, "device": "cpu", "unet": {"fp32": {"p50_ms": 2.0}, "int8": {"p50_ms": 1.0}, "speedup_p50": 2.0}},
}


@pytest.fixture(scope="module")
def mixed_run(unet_run, tmp_path_factory):
    """The U-Net run plus INT8 (with a TensorRT calibration cache) and FP16 ONNX artifacts laid out as
    ``medkd quantize`` writes them, and engines for Orin (sm_87) and an H100 (sm_90)."""
    root = tmp_path_factory.mktemp("mixed") / "run"
    shutil.copytree(unet_run, root)
    for name, precision in (("quant", "int8"), ("fp16", "fp16")):
        shutil.copytree(root / "export", root / name)
        manifest = read_manifest(root / name)
        manifest.config["export"]["precision"] = precision
        if precision == "int8":
            (root / name / "unet.calib").write_text("TRT-100300-EntropyCalibration2\nimage: 3c010a14\n")
            manifest.files = hash_files(root / name, ["unet.onnx", "unet.calib"])
            manifest.metrics = {"quantization": QUANT_REPORT}
        manifest.inputs = [as_input(root / "export")]
        write_manifest(root / name, manifest)
    add_engines(root / "export", root / "export" / "tensorrt-fp16")
    add_engines(root / "export", root / "export" / "tensorrt-h100", compute_capability="9.0", precision="fp32")
    (root / "aoti").mkdir()
    write_manifest(root / "aoti", Manifest(kind="aoti", config={"export": read_manifest(root / "export").config["export"]}))
    return root


@pytest.mark.parametrize(
    ("target", "variants", "left_out"),
    [
        (
            "x86-cpu",
            ["onnx-fp32", "onnx-int8"],
            {"fp16": "fp16 ONNX is not for x86-cpu", "tensorrt-fp16": "runs ONNX Runtime, not TensorRT", "aoti": "AOTInductor packages hold compiled code"},
        ),
        ("jetson-orin", ["onnx-fp32", "onnx-fp16", "onnx-int8", "tensorrt-fp16"], {"tensorrt-h100": "compute capability 9.0; jetson-orin needs 8.7"}),
    ],
)
def test_targets_take_their_variants(mixed_run, tmp_path, target, variants, left_out, capsys):
    capsys.readouterr()
    manifest, members = bundle_manifest(pack(mixed_run, tmp_path / f"{target}.medkd", target))
    assert [v.name for v in manifest.variants] == variants
    err = capsys.readouterr().err
    for directory, reason in left_out.items():
        assert f"{directory}: " in err and reason in err
    assert members["variants/onnx-int8/unet.calib"].startswith(b"TRT-100300-EntropyCalibration2")
    gate = next(a for a in manifest.accuracy if a.model == "quant")
    assert (gate.split, gate.overall) == ("test", {"dsc": 0.79, "nsd": 0.69, "dsc_drop": 0.01, "n": 3})
    assert {"source": "quant manifest", "artifact_id": read_manifest(mixed_run / "quant").id, "latency": QUANT_REPORT["latency"]} in manifest.latency
    assert "| unet | fp32 2.0000 ms; int8 1.0000 ms | 2.0000 |" in members["MODEL_CARD.md"].decode()
    if "tensorrt-fp16" in variants:
        (engine,) = manifest.variant("tensorrt-fp16").engines
        assert (engine.tensorrt, engine.compute_capability, engine.file) == ("10.3.0", "8.7", "unet.fp16.plan")
        assert members["variants/tensorrt-fp16/unet.fp16.plan"] == b"made-up unet engine for sm_8.7"


def test_precision_comes_from_qdq_nodes_and_float16_weights(tmp_path):
    def artifact(name, node, initializer):
        graph = helper.make_graph([node], name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [initializer])
        directory = tmp_path / name
        directory.mkdir()
        onnx.save(helper.make_model(graph), str(directory / "g.onnx"))
        return RunArtifact(directory, Manifest(kind="export", config={"export": {"graphs": {"g": {"file": "g.onnx"}}}}))

    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    qdq = artifact("qdq", helper.make_node("QuantizeLinear", ["x", "s"], ["y"]), scale)
    half = artifact("half", helper.make_node("Add", ["x", "h"], ["y"]), helper.make_tensor("h", TensorProto.FLOAT16, [1], [1.0]))
    plain = artifact("plain", helper.make_node("Add", ["x", "s"], ["y"]), scale)
    assert [onnx_precision(a) for a in (qdq, half, plain)] == ["int8", "fp16", "fp32"]


def test_a_changed_artifact_file_stops_packing(unet_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(unet_run / "export", run_dir / "export")
    with open(run_dir / "export" / "unet.onnx", "r+b") as handle:
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(bytes([byte[0] ^ 0xFF]))
    out = tmp_path / "stale.medkd"
    assert run(["pack", str(run_dir), "--target", "x86-cpu", "--out", str(out)]) == 2
    assert "unet.onnx no longer matches its artifact manifest" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".stale.medkd.*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "x86-gpu", "--out", "b.medkd"], "unknown target 'x86-gpu'"),
        (["--target", "x86-cpu", "--out", "b.tar.gz"], "--out must be NAME.medkd"),
        (["--target", "x86-cpu", "--out", "b.medkd", "--sign", "missing.pem"], "signing key missing.pem does not exist"),
        (["--target", "x86-cpu", "--out", "b.medkd", "--report", "missing.json"], "missing.json is not a medkd eval or benchmark report"),
    ],
)
def test_bad_pack_options_are_bad_input(unet_run, args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert run(["pack", str(unet_run), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b.medkd").exists()


def test_a_run_without_exports_is_bad_input(unet_run, tmp_path, capsys):
    assert run(["pack", str(unet_run / "student"), "--target", "x86-cpu", "--out", str(tmp_path / "s.medkd")]) == 2
    assert "has nothing to pack for x86-cpu (no export artifact found)" in capsys.readouterr().err


# medkd pack, killed (SIGKILL) in the middle of the archive: manifest, signature and model card written.
KILLED_PACK = """
import os, signal, sys, tarfile
add = tarfile.TarFile.addfile
def addfile(self, info, fileobj=None):
    add(self, info, fileobj)
    if info.name == "MODEL_CARD.md":
        os.kill(os.getpid(), signal.SIGKILL)
tarfile.TarFile.addfile = addfile
from medkd.cli import run
run(sys.argv[1:])
"""


def test_a_killed_pack_leaves_nothing_after_the_next_run(unet_run, tmp_path, capsys):
    out = tmp_path / "unet.medkd"
    other = tmp_path / ".other.medkd.x1y2.tmp"  # another bundle's: not this pack's to remove
    other.write_bytes(b"partial")
    argv = ["pack", str(unet_run), "--target", "x86-cpu", "--out", str(out)]
    killed = subprocess.run([sys.executable, "-c", KILLED_PACK, *argv], capture_output=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    (partial,) = tmp_path.glob(".unet.medkd.*.tmp")
    assert partial.is_file() and not out.exists()
    assert run(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, out.name]
    capsys.readouterr()
    assert run(["verify", str(out), "--allow-unsigned"]) == 0 and "UNSIGNED, accepted because of --allow-unsigned (development only); all other checks passed" in capsys.readouterr().out
