"""The runtime install: a fresh virtual environment with ``pip install '.[runtime]'`` (from PyPI, no torch)
verifies a signed bundle, segments a real CT slice with it exactly as the full install does, and times it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medkd.cli import run
from medkd.data import load_manifest
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.data]
TRAINING_MODULES = ("torch", "torchvision", "monai", "segment_anything", "scipy", "yaml", "timm")


def _check(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, **kwargs)
    assert result.returncode == 0, f"{command[:4]} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def runtime_bin(tmp_path_factory) -> Path:
    """``bin/`` of a new virtual environment holding medkd's wheel with the runtime extra only. The wheel is
    built from a copy of the sources, so that the build leaves nothing in the checkout."""
    root = tmp_path_factory.mktemp("runtime-install")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, root / name)
    for folder in project["tool"]["setuptools"]["package-dir"].values():
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    _check([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(root / "wheel"), str(root)])
    (wheel,) = (root / "wheel").glob("medkd-*.whl")
    venv.create(root / "venv", with_pip=True)
    _check([str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[runtime]"])
    return root / "venv" / "bin"


def test_the_runtime_install_verifies_segments_and_times_a_bundle_without_torch(runtime_bin, unet_bundle, trusted, ct_manifest, tmp_path):
    found = _check([str(runtime_bin / "python"), "-c", f"import importlib.util as u; print([m for m in {TRAINING_MODULES!r} if u.find_spec(m)])"])
    assert found.stdout.strip() == "[]"

    verified = _check([str(runtime_bin / "medkd"), "verify", str(unet_bundle), "--trust-store", trusted])
    assert verified.stdout.rstrip().endswith("unet.medkd: signed by a trusted key; all checks passed")

    manifest = load_manifest(ct_manifest)
    rows = [manifest.rows[3], next(r for r in manifest.rows if r.image == manifest.rows[3].image and r.id != manifest.rows[3].id)]
    image = str(manifest.resolve(rows[0].image))
    boxes = [item for row in rows for item in ("--box", ",".join(map(str, row.box)))]
    argv = ["segment", "--model", str(unet_bundle), "--trust-store", trusted, "--image", image, *boxes, "--modality", "CT", "--json"]
    segmented = _check([str(runtime_bin / "medkd"), *argv, "--out", str(tmp_path / "runtime.png")])
    assert run([*argv, "--out", str(tmp_path / "full.png")]) == 0
    runtime_mask, full_mask = (np.asarray(Image.open(tmp_path / name)) for name in ("runtime.png", "full.png"))
    assert runtime_mask.shape == (rows[0].height, rows[0].width) and set(np.unique(runtime_mask)) <= {0, 1, 2}
    assert np.array_equal(runtime_mask, full_mask) and (tmp_path / "runtime.overlay.png").is_file()
    records = [json.loads(line) for line in segmented.stdout.splitlines()]
    assert [r["area"] for r in records] == [int((runtime_mask == n).sum()) for n in (1, 2)]

    timed = _check([str(runtime_bin / "medkd"), "bench", "--model", str(unet_bundle), "--trust-store", trusted, "--iters", "2", "--warmup", "1", "--out", str(tmp_path / "bench.json")])
    entries = json.loads((tmp_path / "bench.json").read_text())["entries"]
    assert "onnx-fp32" in timed.stderr and [e["backend"] for e in entries] == ["ort"] and entries[0]["latency_ms"]["p50"] > 0
