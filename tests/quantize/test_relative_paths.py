"""``medkd quantize`` with paths relative to the working directory (as ``medkd demo`` passes them)."""

from __future__ import annotations

import os
import shutil

from medkd.artifacts import read_manifest
from medkd.cli import run
from tests.quantize.conftest import FEW


def test_relative_paths_quantize_like_absolute_ones(tiny_export, ct_manifest, tmp_path, monkeypatch) -> None:
    shutil.copytree(tiny_export, tmp_path / "export")
    shutil.copy(ct_manifest, tmp_path / "data.jsonl")
    monkeypatch.chdir(tmp_path)
    assert run(["quantize", "export", "--calib", "data.jsonl", "--out", "int8", "--max-dsc-drop", "0.01", *FEW]) == 0  # the gate too
    manifest = read_manifest("int8")
    assert manifest.config["export"]["precision"] == "int8"
    assert all(os.path.isfile(os.path.join("int8", name)) for name in manifest.files)
