"""Licences and attribution of the datasets a model was made from.

Each dataset of a data manifest in the provenance chain is looked up in its folder below the manifest's
data root: ``LICENSE-<SPDX id>.txt`` files name its licences (and travel in the bundle, as CC BY asks),
its ``README.md`` gives the source, the attribution the licence asks for, and what was changed.
"""

from __future__ import annotations

from pathlib import Path

from medkd.bundle.schema import DATA_DIR, DatasetAttribution
from medkd.data import load_manifest
from medkd.errors import BadInput

LICENCE_PREFIX = "LICENSE"
README = "README.md"


def licence_id(path: Path) -> str:
    """``LICENSE-CC-BY-4.0.txt`` -> ``CC-BY-4.0`` (a bare ``LICENSE`` file: ``see LICENSE``)."""
    stem = path.name.removesuffix(".txt").removesuffix(".md")
    return stem.removeprefix(f"{LICENCE_PREFIX}-") if stem != LICENCE_PREFIX else f"see {path.name}"


def dataset_attributions(data_manifests: list[Path]) -> tuple[list[DatasetAttribution], dict[str, Path], list[str]]:
    """Attribution per dataset, the licence files to pack (bundle name -> path), and notes on what is missing."""
    entries: dict[str, DatasetAttribution] = {}
    files: dict[str, Path] = {}
    notes: list[str] = []
    for path in data_manifests:
        try:
            manifest = load_manifest(path)
        except BadInput as exc:
            notes.append(f"dataset licences of {path.name} not recorded: {exc}")
            continue
        for dataset, info in sorted(manifest.datasets.items()):
            if dataset in entries:
                continue
            folder = manifest.root / info.get("path", ".")
            licences = sorted(p for p in folder.glob(f"{LICENCE_PREFIX}*") if p.is_file())
            readme = folder / README
            packed = {f"{DATA_DIR}/{dataset}/{p.name}": p for p in licences}
            files.update(packed)
            if not licences:
                notes.append(f"dataset {dataset}: no {LICENCE_PREFIX}* file in its folder; its licence is not recorded")
            entries[dataset] = DatasetAttribution(
                dataset=dataset,
                modality=info.get("modality"),
                licences=[licence_id(p) for p in licences],
                attribution=readme.read_text(encoding="utf-8").strip() if readme.is_file() else None,
                files=sorted(packed),
            )
    return list(entries.values()), files, notes
