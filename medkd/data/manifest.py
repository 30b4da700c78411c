"""The data manifest: one row per object (image or slice, label), with splits, in JSON Lines.

Line 1 is the header (``kind``, ``schema``, the indexed ``root``, ``datasets`` with their layout,
modality and counts, the ``split`` seed and fractions, ``skipped`` files with reasons, ``created``);
every further line is one :class:`ManifestRow`. Paths in rows are relative to the root, so a
manifest moves with its data: :func:`load_manifest` takes another root when the data moved.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from medkd import __version__
from medkd.artifacts import atomic_write_text
from medkd.errors import BadInput

MANIFEST_KIND = "medkd.data-manifest"
MANIFEST_SCHEMA = 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ManifestRow:
    """One object on one 2D image or volume slice.

    ``box`` is x0, y0, x1, y1 in original pixels with inclusive ends (MedSAM's convention);
    the object's pixels are ``mask == label`` on the mask (slice); ``spacing`` is mm per pixel
    (row, column), ``None`` when the file does not say; ``slice`` indexes the volume's slice axis
    (``axis``: the NIfTI array axis sliced, 0 for DICOM / NPZ stacks), both ``None`` for 2D images.
    """

    id: str
    dataset: str
    subject: str
    split: str
    modality: str
    image: str
    mask: str
    slice: int | None
    axis: int | None
    label: int
    label_name: str | None
    box: tuple[int, int, int, int]
    area: int
    height: int
    width: int
    spacing: tuple[float, float] | None

    @property
    def image_key(self) -> tuple[str, int | None]:
        """Identifies the 2D image an object lies on (rows sharing it share one encoding)."""
        return self.image, self.slice

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ManifestRow:
        names = {f.name for f in fields(cls)}
        missing = names - set(value)
        if missing:
            raise BadInput(f"manifest row lacks {', '.join(sorted(missing))}")
        row = {name: value[name] for name in names}
        row["box"] = tuple(int(v) for v in row["box"])
        row["spacing"] = tuple(float(v) for v in row["spacing"]) if row["spacing"] is not None else None
        return cls(**row)


@dataclass
class DataManifest:
    """A loaded (or freshly built) manifest: header fields plus rows."""

    root: Path
    rows: list[ManifestRow]
    datasets: dict[str, dict[str, Any]]
    split_seed: int
    split_fractions: tuple[float, float, float]
    skipped: list[dict[str, str]] = field(default_factory=list)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def select(self, split: str | None = None, datasets: Iterable[str] | None = None) -> list[ManifestRow]:
        """Rows of one split (``None``: all) and of the named datasets (``None``: all)."""
        if split is not None and split not in SPLITS:
            raise BadInput(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
        wanted = set(datasets) if datasets is not None else None
        if wanted is not None and wanted - set(self.datasets):
            raise BadInput(f"manifest has no dataset {', '.join(sorted(wanted - set(self.datasets)))}")
        return [
            row
            for row in self.rows
            if (split is None or row.split == split) and (wanted is None or row.dataset in wanted)
        ]

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """Subjects, images (2D images or slices) and objects per dataset and split."""
        table: dict[str, dict[str, dict[str, set]]] = {}
        for row in self.rows:
            cell = table.setdefault(row.dataset, {}).setdefault(row.split, {"subjects": set(), "images": set(), "objects": set()})
            cell["subjects"].add(row.subject)
            cell["images"].add(row.image_key)
            cell["objects"].add(row.id)
        return {
            dataset: {split: {k: len(v) for k, v in cell.items()} for split, cell in sorted(splits.items(), key=lambda kv: SPLITS.index(kv[0]))}
            for dataset, splits in sorted(table.items())
        }

    def resolve(self, relative: str) -> Path:
        """Absolute path of a row's image or mask."""
        return self.root / relative

    def header(self) -> dict[str, Any]:
        return {
            "kind": MANIFEST_KIND,
            "schema": MANIFEST_SCHEMA,
            "medkd": __version__,
            "created": self.created,
            "root": str(self.root),
            "datasets": self.datasets,
            "split": {"seed": self.split_seed, "fractions": list(self.split_fractions)},
            "skipped": self.skipped,
            "rows": len(self.rows),
        }


def first_per_dataset(rows: list[ManifestRow], limit: int | None) -> list[ManifestRow]:
    """The first ``limit`` rows of each dataset, in manifest order (all rows when ``None``)."""
    if limit is None:
        return rows
    taken: dict[str, int] = {}
    kept = []
    for row in rows:
        taken[row.dataset] = taken.get(row.dataset, 0) + 1
        if taken[row.dataset] <= limit:
            kept.append(row)
    return kept


def save_manifest(manifest: DataManifest, path: str | os.PathLike) -> None:
    """Write the manifest as JSON Lines (header first), atomically."""
    lines = [json.dumps(manifest.header(), sort_keys=True)]
    lines += [json.dumps(asdict(row), sort_keys=True) for row in manifest.rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def load_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None) -> DataManifest:
    """Read a manifest; ``root`` overrides the recorded data root (for data that moved)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no data manifest at {path}")
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not a JSON Lines data manifest: {exc}") from exc
    if not lines or not isinstance(lines[0], dict) or lines[0].get("kind") != MANIFEST_KIND:
        raise BadInput(f"{path} is not a medkd data manifest (made by 'medkd data index')")
    header = lines[0]
    if header.get("schema", 0) > MANIFEST_SCHEMA:
        raise BadInput(f"{path} has manifest schema {header['schema']}, newer than this medkd ({MANIFEST_SCHEMA})")
    rows = [ManifestRow.from_dict(value) for value in lines[1:]]
    if len(rows) != header.get("rows"):
        raise BadInput(f"{path} is incomplete: {len(rows)} rows, header says {header.get('rows')}")
    data_root = Path(root) if root is not None else Path(header["root"])
    if not data_root.is_dir():
        raise BadInput(f"data root {data_root} of {path} not found (pass the data's new location as root)")
    return DataManifest(
        root=data_root,
        rows=rows,
        datasets=header["datasets"],
        split_seed=int(header["split"]["seed"]),
        split_fractions=tuple(header["split"]["fractions"]),
        skipped=header.get("skipped", []),
        created=header.get("created", ""),
    )
