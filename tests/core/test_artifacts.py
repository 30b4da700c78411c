"""Atomic writes leave nothing half-written; manifests round-trip and pin their content."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medkd.artifacts import (
    Manifest,
    as_input,
    atomic_path,
    atomic_write_json,
    hash_files,
    read_manifest,
    verify_files,
    write_manifest,
)
from medkd.errors import BadInput


def test_atomic_path_keeps_old_content_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_manifest_round_trip_and_content_id(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"weights")
    manifest = Manifest(kind="teacher", config={"lr": 1e-4}, files=hash_files(tmp_path, ["model.pt"]), metrics={"dsc": 0.9})
    written = write_manifest(tmp_path, manifest)
    again = read_manifest(tmp_path, kind="teacher")
    assert again == written
    assert written.id == Manifest(kind="teacher", config={"lr": 1e-4}, files=written.files).content_id()
    assert written.id != Manifest(kind="teacher", config={"lr": 2e-4}, files=written.files).content_id()
    assert as_input(tmp_path).id == written.id


def test_changed_file_is_detected(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"weights")
    manifest = write_manifest(tmp_path, Manifest(kind="student", files=hash_files(tmp_path, ["model.pt"])))
    (tmp_path / "model.pt").write_bytes(b"weightz")
    assert verify_files(tmp_path, manifest) == ["model.pt"]


def test_incomplete_or_wrong_artifacts_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not a complete medkd artifact"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(BadInput, match="not valid JSON"):
        read_manifest(tmp_path)
    atomic_write_json(tmp_path / "manifest.json", {"kind": "export", "id": "x", "schema": 1})
    with pytest.raises(BadInput, match="holds a 'export' artifact, expected 'teacher'"):
        read_manifest(tmp_path, kind="teacher")


def test_atomic_files_get_the_usual_permissions(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "manifest.json", {"kind": "x"})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == 0o666 & ~mask
