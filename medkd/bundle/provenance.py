"""The provenance chain of packed artifacts: every artifact and file they were made from, by SHA-256.

Starting at the packed artifacts, the inputs recorded in each manifest are followed as far as they
can be found: artifact directories (their manifest read and followed further) and files (data
manifests, checkpoints). An input that is gone or changed since it was recorded stays in the chain
with ``found`` false.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from medkd.artifacts import MANIFEST_NAME, ArtifactInput, read_manifest, sha256_file
from medkd.bundle.schema import ProvenanceNode
from medkd.errors import BadInput


@dataclass
class Provenance:
    nodes: list[ProvenanceNode] = field(default_factory=list)
    artifacts: dict[Path, ProvenanceNode] = field(default_factory=dict)
    data_manifests: dict[str, Path] = field(default_factory=dict)


def _artifact_node(directory: Path, sha256: str) -> ProvenanceNode:
    manifest = read_manifest(directory)
    return ProvenanceNode(
        kind=manifest.kind,
        id=manifest.id,
        name=directory.resolve().name,
        sha256=sha256,
        found=True,
        created=manifest.created,
        software=manifest.software,
        config=manifest.config,
        inputs=[item.sha256 for item in manifest.inputs],
    )


def _input_node(item: ArtifactInput) -> tuple[ProvenanceNode, Path | None]:
    """The node for a recorded input, and its directory when it is an artifact found unchanged."""
    path = Path(item.path)
    manifest_path = path / MANIFEST_NAME
    if path.is_dir() and manifest_path.is_file() and sha256_file(manifest_path) == item.sha256:
        try:
            return _artifact_node(path, item.sha256), path
        except BadInput:
            pass
    found = path.is_file() and sha256_file(path) == item.sha256
    return ProvenanceNode(kind=item.kind, id=item.id, name=path.name, sha256=item.sha256, found=found), None


def provenance_chain(directories: list[Path]) -> Provenance:
    """Nodes of the packed artifacts and of everything they were made from, each once."""
    chain = Provenance()
    seen: set[str] = set()
    queue: deque[tuple[ProvenanceNode, Path | None]] = deque()
    for directory in directories:
        queue.append((_artifact_node(directory, sha256_file(directory / MANIFEST_NAME)), directory))
    while queue:
        node, directory = queue.popleft()
        if node.sha256 in seen:
            continue
        seen.add(node.sha256)
        chain.nodes.append(node)
        if directory is None:
            continue
        chain.artifacts[directory.resolve()] = node
        for item in read_manifest(directory).inputs:
            child, child_dir = _input_node(item)
            queue.append((child, child_dir))
            if child.kind == "data-manifest" and child.found:
                chain.data_manifests.setdefault(child.sha256, Path(item.path))
    return chain
