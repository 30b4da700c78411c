"""The ``--data`` option of training stages: a manifest file, or a folder indexed into the run."""

from __future__ import annotations

from pathlib import Path

from medkd.data import build_manifest, save_manifest
from medkd.errors import BadInput

INDEXED_NAME = "data.jsonl"


def resolve_manifest(data: Path, out: Path) -> Path:
    """``data`` itself if it is a manifest; a folder is indexed once into ``out/data.jsonl``.

    Under ``torchrun`` every rank may index at the same time: each writes the same content
    atomically, so readers only ever see a complete manifest.
    """
    if data.is_file():
        return data
    if not data.is_dir():
        raise BadInput(f"--data {data} is neither a manifest nor a folder")
    manifest_path = out / INDEXED_NAME
    if not manifest_path.exists():
        save_manifest(build_manifest(data), manifest_path)
    return manifest_path
