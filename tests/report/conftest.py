"""A tiny but complete run on real CT and ultrasound images: teacher, student, ONNX export, INT8
quantization, eval reports and benchmark results, made with the real commands once per session."""

from __future__ import annotations

import pytest

from medkd.artifacts import ArtifactInput, as_input, sha256_file
from medkd.cli import run
from medkd.data import build_manifest, save_manifest
from tests.conftest import TINY_SAM

FETAL_IMAGES = 6
QUANTIZE_FEW = ["--samples", "4", "--gate-samples", "3", "--test-samples", "3", "--latency-runs", "3", "--no-trt-cache"]
BENCH_FEW = ["--warmup", "1", "--iters", "3", "--threads", "1"]


@pytest.fixture(scope="session")
def two_modalities(shared_data, tmp_path_factory):
    """CT organ slices (4 images) and six fetal-head ultrasound images of ../shared/data, indexed."""
    root = tmp_path_factory.mktemp("report-data") / "data"
    root.mkdir()
    (root / "ct-organs").symlink_to(shared_data / "ct-organs")
    fetal = root / "fetal-head-us"
    for folder in ("images", "masks"):
        (fetal / folder).mkdir(parents=True)
        for path in sorted((shared_data / "fetal-head-us" / folder).iterdir())[:FETAL_IMAGES]:
            (fetal / folder / path.name).symlink_to(path)
    (fetal / "pixel_size_and_HC.csv").symlink_to(shared_data / "fetal-head-us" / "pixel_size_and_HC.csv")
    path = root.parent / "data.jsonl"
    save_manifest(build_manifest(root, progress=False), path)
    return path


def _model(directory, kind, seed, inputs):
    import torch

    from medkd.zoo import create_model, default_preprocessing, save_model_artifact

    torch.manual_seed(seed)
    model = create_model("sam-vit-stand-in", **TINY_SAM)
    save_model_artifact(model, directory, name="sam-vit-stand-in", kind=kind, model_kwargs=TINY_SAM, inputs=inputs, preprocessing=default_preprocessing("sam-vit-stand-in", TINY_SAM))
    return directory


@pytest.fixture(scope="session")
def tiny_run(two_modalities, tmp_path_factory):
    """RUN/{teacher, student, export, quant} plus RUN/eval-*.json and RUN/bench-*.json."""
    root = tmp_path_factory.mktemp("report-run") / "run"
    data = ArtifactInput("data-manifest", str(two_modalities), sha256_file(two_modalities))
    teacher = _model(root / "teacher", "teacher", 0, [data])
    student = _model(root / "student", "student", 1, [data, as_input(teacher)])
    common = ["--data", str(two_modalities), "--split", "all"]
    assert run(["export", "onnx", str(student), "--out", str(root / "export"), *common, "--validate-samples", "1"]) == 0
    assert run(["quantize", str(root / "export"), "--calib", str(two_modalities), "--out", str(root / "quant"), *QUANTIZE_FEW]) == 0
    for name in ("teacher", "student"):
        assert (
            run(
                [
                    "eval",
                    "-m",
                    str(root / name),
                    "-d",
                    str(two_modalities),
                    "--split",
                    "test",
                    "--limit",
                    "3",
                    "-o",
                    str(root / f"eval-{name}.json"),
                    "--no-cache",
                ]
            )
            == 0
        )
    for name, backend in (("student", "torch"), ("export", "ort"), ("quant", "ort-int8")):
        assert run(["bench", str(root / name), "--backend", backend, *BENCH_FEW, "--out", str(root / f"bench-{name}.json")]) == 0
    return root
