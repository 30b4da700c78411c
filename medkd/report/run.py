"""What a run directory holds: its artifacts (manifests), evaluation reports and benchmark results, and
the provenance chain that links them (every manifest input, checked against the file or artifact it names)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medkd.artifacts import MANIFEST_NAME, ArtifactInput, Manifest, read_manifest, sha256_file
from medkd.bench.schema import BENCH_KIND
from medkd.errors import BadInput
from medkd.evaluation.report import REPORT_KIND

MAX_DEPTH = 3
SKIPPED_FOLDERS = ("tensorboard",)


@dataclass(frozen=True)
class Artifact:
    """An artifact directory of the run and its manifest; ``name`` is its path inside the run."""

    path: Path
    name: str
    manifest: Manifest

    @property
    def model_name(self) -> str | None:
        config = self.manifest.config
        return (config.get("model") or config.get("export", {}).get("model") or {}).get("name")


@dataclass(frozen=True)
class RunContents:
    root: Path
    artifacts: list[Artifact]
    evals: list[tuple[Path, dict[str, Any]]]
    bench: list[tuple[Path, dict[str, Any]]]


def _walk(root: Path) -> list[tuple[Path, list[str], list[str]]]:
    found = []
    for folder, subfolders, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in SKIPPED_FOLDERS and depth < MAX_DEPTH)
        found.append((Path(folder), subfolders, sorted(files)))
    return found


def _json_of_kind(path: Path, kinds: tuple[str, ...]) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) and value.get("kind") in kinds else None


def scan_run(root: Path, extra_bench: list[Path] = ()) -> RunContents:
    """Every artifact, eval report and benchmark result below ``root`` (three folders deep), plus ``extra_bench``."""
    if not root.is_dir():
        raise BadInput(f"{root} is not a run directory")
    artifacts, evals, bench = [], [], []
    for folder, _, files in _walk(root):
        if MANIFEST_NAME in files:
            name = folder.relative_to(root).as_posix() if folder != root else root.name
            artifacts.append(Artifact(folder, name, read_manifest(folder)))
        for file in files:
            if file.endswith(".json") and file != MANIFEST_NAME:
                document = _json_of_kind(folder / file, (REPORT_KIND, BENCH_KIND))
                if document is not None:
                    (evals if document["kind"] == REPORT_KIND else bench).append((folder / file, document))
    for path in extra_bench:
        document = _json_of_kind(path, (BENCH_KIND,))
        if document is None:
            raise BadInput(f"{path} is not a medkd benchmark result")
        bench.append((path, document))
    if not artifacts:
        raise BadInput(f"{root} holds no medkd artifact (no {MANIFEST_NAME} within {MAX_DEPTH} folders)")
    return RunContents(root, artifacts, evals, bench)


def resolve_input(item: ArtifactInput, root: Path) -> Path | None:
    """Where a manifest input's path points now: as written (relative to the working directory), else
    relative to the run's parent folders (runs move between machines)."""
    recorded = Path(item.path)
    for candidate in (recorded, *(parent / recorded for parent in (root, *root.parents))):
        if candidate.exists():
            return candidate
    return None


def input_status(item: ArtifactInput, root: Path, by_id: dict[str, Artifact]) -> str:
    """``artifact NAME`` when the input is an artifact of the run, else whether the file still matches its hash."""
    if item.id and item.id in by_id:
        return f"artifact {by_id[item.id].name}"
    path = resolve_input(item, root)
    if path is None:
        return "not found here"
    target = path / MANIFEST_NAME if path.is_dir() else path
    if not target.is_file():
        return "not found here"
    return "sha256 matches" if sha256_file(target) == item.sha256 else "changed since (sha256 differs)"


def chain_order(artifacts: list[Artifact]) -> list[Artifact]:
    """Artifacts with every one after the run's artifacts it was made from (inputs first)."""
    by_id = {a.manifest.id: a for a in artifacts}
    ordered: list[Artifact] = []
    placed: set[str] = set()

    def place(artifact: Artifact, visiting: frozenset[str]) -> None:
        if artifact.manifest.id in placed or artifact.manifest.id in visiting:
            return
        for item in artifact.manifest.inputs:
            if item.id in by_id:
                place(by_id[item.id], visiting | {artifact.manifest.id})
        placed.add(artifact.manifest.id)
        ordered.append(artifact)

    for artifact in sorted(artifacts, key=lambda a: a.manifest.created):
        place(artifact, frozenset())
    return ordered


def provenance_rows(contents: RunContents) -> list[dict[str, Any]]:
    """One row per artifact in chain order: what it is and each input with its status."""
    by_id = {a.manifest.id: a for a in contents.artifacts}
    return [
        {
            "name": artifact.name,
            "kind": artifact.manifest.kind,
            "id": artifact.manifest.id,
            "model": artifact.model_name,
            "created": artifact.manifest.created,
            "files": len(artifact.manifest.files),
            "inputs": [{"kind": i.kind, "path": i.path, "sha256": i.sha256, "status": input_status(i, contents.root, by_id)} for i in artifact.manifest.inputs],
        }
        for artifact in chain_order(contents.artifacts)
    ]
