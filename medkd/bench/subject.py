"""What ``medkd bench`` measures: a model opened on one backend, as workloads (one per graph)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medkd.artifacts import MANIFEST_NAME, read_manifest
from medkd.bench.timing import Workload
from medkd.errors import BadInput


@dataclass
class Subject:
    """A model on a backend: its name, where it came from, precision, device and graphs to time."""

    model: str
    source: str
    backend: str
    precision: str
    device: str
    workloads: list[Workload]
    artifact_id: str | None = None
    notes: list[str] = field(default_factory=list)


def artifact_id(path: Path) -> str | None:
    """The manifest id of an artifact directory (or of the one holding a file), if there is one."""
    directory = path if path.is_dir() else path.parent
    return read_manifest(directory).id if (directory / MANIFEST_NAME).is_file() else None


def select_graphs(available: list[str], wanted: list[str] | None) -> list[str]:
    """``wanted`` (all when empty), each checked against what the model has."""
    if not wanted:
        return available
    unknown = [graph for graph in wanted if graph not in available]
    if unknown:
        raise BadInput(f"--graph {', '.join(unknown)} is not in this model (graphs: {', '.join(available)})")
    return list(wanted)
