"""Artifact directories, manifests, atomic writes and hashing shared by every stage.

An artifact is a directory whose ``manifest.json`` is written last and atomically: a directory
without a readable manifest is incomplete and is rebuilt by its stage.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medkd import __version__
from medkd.errors import BadInput
from medkd.temporaries import held_file, remove_stale

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
TEMPORARY_SUFFIX = ".tmp"
_CHUNK = 1 << 20
_TRACKED_PACKAGES = (
    "torch",
    "torchvision",
    "segment-anything",
    "mobilesam-mirror",
    "timm",
    "monai",
    "onnx",
    "onnxruntime",
    "nncf",
    "tensorrt",
)


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """SHA-256 of a JSON value in canonical form (sorted keys, no spaces)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (held: see :mod:`medkd.temporaries`); rename it over
    ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with held_file(target.parent, prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX) as tmp:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)


def remove_stale_temporaries(directory: str | os.PathLike, pattern: str = f".*{TEMPORARY_SUFFIX}") -> list[Path]:
    """Delete the temporary files that ``atomic_path`` left in ``directory`` when its process was killed
    (kill -9); those of running processes stay."""
    return remove_stale(directory, [pattern])


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def software_versions() -> dict[str, str]:
    """Versions of Python, medkd and the installed packages that decide an artifact's behaviour."""
    versions = {"python": platform.python_version(), "medkd": __version__}
    for package in _TRACKED_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return versions


@dataclass
class ArtifactInput:
    """An artifact or file that a stage read, pinned by its hash."""

    kind: str
    path: str
    sha256: str
    id: str | None = None


@dataclass
class Manifest:
    """What an artifact is, what it was made from, and what was measured on it."""

    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    inputs: list[ArtifactInput] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    software: dict[str, str] = field(default_factory=software_versions)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    schema: int = MANIFEST_SCHEMA
    id: str = ""

    def content_id(self) -> str:
        """Identifier derived from kind, inputs, config and file hashes (not from the time)."""
        basis = {
            "kind": self.kind,
            "config": self.config,
            "inputs": [asdict(item) for item in self.inputs],
            "files": self.files,
        }
        return f"{self.kind}-{sha256_json(basis)[:12]}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Manifest:
        required = {"kind", "id", "schema"}
        missing = required - set(value)
        if missing:
            raise BadInput(f"manifest lacks {', '.join(sorted(missing))}")
        if value["schema"] > MANIFEST_SCHEMA:
            raise BadInput(f"manifest schema {value['schema']} is newer than this medkd ({MANIFEST_SCHEMA})")
        known = {name for name in cls.__dataclass_fields__}
        fields = {key: val for key, val in value.items() if key in known}
        fields["inputs"] = [ArtifactInput(**item) for item in value.get("inputs", [])]
        return cls(**fields)


def hash_files(directory: str | os.PathLike, names: list[str]) -> dict[str, str]:
    """SHA-256 of each named file under ``directory``, keyed by its relative name."""
    root = Path(directory)
    return {name: sha256_file(root / name) for name in sorted(names)}


def write_manifest(directory: str | os.PathLike, manifest: Manifest) -> Manifest:
    """Hash nothing new, give the manifest its content id and write it atomically (last)."""
    manifest.id = manifest.content_id()
    atomic_write_json(Path(directory) / MANIFEST_NAME, manifest.to_dict())
    return manifest


def read_manifest(directory: str | os.PathLike, kind: str | None = None) -> Manifest:
    """Read and validate an artifact's manifest; ``kind`` checks what the caller expects."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise BadInput(f"{directory} is not a complete medkd artifact (no {MANIFEST_NAME})")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not valid JSON: {exc}") from exc
    manifest = Manifest.from_dict(value)
    if kind is not None and manifest.kind != kind:
        raise BadInput(f"{directory} holds a '{manifest.kind}' artifact, expected '{kind}'")
    return manifest


def verify_files(directory: str | os.PathLike, manifest: Manifest) -> list[str]:
    """Names of files whose content no longer matches the manifest (missing files included)."""
    root = Path(directory)
    return [
        name
        for name, digest in manifest.files.items()
        if not (root / name).is_file() or sha256_file(root / name) != digest
    ]


def as_input(directory: str | os.PathLike) -> ArtifactInput:
    """Describe an artifact directory as an input of another stage, pinned by its manifest hash."""
    manifest = read_manifest(directory)
    return ArtifactInput(
        kind=manifest.kind,
        path=str(directory),
        sha256=sha256_file(Path(directory) / MANIFEST_NAME),
        id=manifest.id,
    )
