"""Recognise dataset folder layouts and list their (image, mask) pairs.

Layouts, tried in this order on a folder:

- ``msd``: ``dataset.json`` (Medical Segmentation Decathlon / nnU-Net) with ``imagesTr`` / ``labelsTr``;
  modality and label names come from the JSON; each volume is one subject.
- ``sam-med2d``: ``index.json`` mapping each image to its single-object masks (SAM-Med2D); the label
  name is the mask name without the image name and the trailing instance number.
- ``paired``: ``images/`` and ``masks/`` (or ``labels/``) matched by name: the mask's stem is the
  image's stem, optionally followed by ``_mask``, ``_label``, ``_seg``, ``_gt`` or ``_instances``
  (plural forms too). A CSV beside them with a file-name column and a ``pixel size`` / ``spacing``
  column gives the pixel spacing in mm (HC18's ``pixel_size_and_HC.csv``).
- ``npz``: MedSAM-style ``*.npz`` files holding ``imgs``, ``gts`` and ``spacing``.

Subjects (for splits): one per volume in ``msd``; elsewhere from the image stem: a leading number
before ``_`` (``010_2HC`` -> ``010``, HC18), else an id containing a digit followed by ``_`` and a
slice number (``amos_0004_75`` -> ``amos_0004``), else the whole stem. A pattern with one group
overrides this.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from medkd.data.modality import canonical_modality, guess_modality
from medkd.data.readers import is_readable_kind, stem_of
from medkd.errors import BadInput

MASK_SUFFIXES = ("", "_mask", "_masks", "_label", "_labels", "_seg", "_gt", "_instances")
MASK_DIRS = ("masks", "labels")


@dataclass
class Pair:
    """One image and its mask files: one label map, or several single-object masks."""

    image: Path
    masks: list[Path]
    subject: str
    spacing: tuple[float, float] | None = None
    mask_names: list[str | None] | None = None


@dataclass
class DatasetSource:
    """A recognised dataset folder: its pairs and the files it could not pair."""

    name: str
    directory: Path
    layout: str
    modality: str
    pairs: list[Pair]
    label_names: dict[int, str] = field(default_factory=dict)
    problems: list[tuple[Path, str]] = field(default_factory=list)


def subject_of(stem: str, pattern: str | None = None) -> str:
    """Subject id of an image stem (see the module docstring for the rules)."""
    if pattern is not None:
        match = re.search(pattern, stem)
        return match.group(1) if match else stem
    for rule in (r"^(\d+)_", r"^(.*\d.*)_\d+$"):
        match = re.match(rule, stem)
        if match:
            return match.group(1)
    return stem


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadInput(f"{path} is not a JSON object")
    return value


def _msd(directory: Path) -> DatasetSource | None:
    spec_path = directory / "dataset.json"
    if not spec_path.is_file() or not (directory / "imagesTr").is_dir():
        return None
    spec = _read_json(spec_path)
    modalities = spec.get("modality") or spec.get("channel_names") or {}
    modality = canonical_modality(str(next(iter(modalities.values()), "")))
    labels = spec.get("labels", {})
    if labels and all(isinstance(v, int) for v in labels.values()):
        labels = {str(v): k for k, v in labels.items()}
    label_names = {int(k): str(v) for k, v in labels.items() if int(k) != 0}
    if "training" in spec:
        listed = [(directory / e["image"], directory / e["label"]) for e in spec["training"]]
    else:
        ending = spec.get("file_ending", ".nii.gz")
        listed = [
            (image, directory / "labelsTr" / image.name.replace(f"_0000{ending}", ending))
            for image in sorted((directory / "imagesTr").glob(f"*_0000{ending}"))
        ]
    source = DatasetSource(directory.name, directory, "msd", modality, [], label_names)
    for image, label in listed:
        missing = [p for p in (image, label) if not p.exists()]
        if missing:
            source.problems.append((missing[0], "listed in dataset.json but missing"))
            continue
        source.pairs.append(Pair(image, [label], stem_of(image)))
    return source


def _sam_med2d(directory: Path, pattern: str | None) -> DatasetSource | None:
    index_path = directory / "index.json"
    if not index_path.is_file():
        return None
    index = _read_json(index_path)
    source = DatasetSource(directory.name, directory, "sam-med2d", guess_modality(directory.name), [])
    for image_name, mask_names in sorted(index.items()):
        image = directory / image_name
        if not image.exists():
            source.problems.append((image, "listed in index.json but missing"))
            continue
        masks = [directory / m for m in mask_names]
        stem = stem_of(image)
        names = [re.sub(r"_\d+$", "", stem_of(m).removeprefix(stem).lstrip("_")) or None for m in masks]
        source.pairs.append(Pair(image, masks, subject_of(stem, pattern), mask_names=names))
    return source


def _spacing_table(directory: Path) -> dict[str, tuple[float, float]]:
    """File stem -> (row, col) spacing from a CSV with a file-name and a pixel-size column."""
    table: dict[str, tuple[float, float]] = {}
    for path in sorted(directory.glob("*.csv")):
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            name_col = next((c for c in columns if c.lower() in ("filename", "file", "image", "name")), None)
            size_col = next((c for c in columns if c.lower().startswith(("pixel size", "pixel_size", "spacing"))), None)
            if name_col is None or size_col is None:
                continue
            for record in reader:
                try:
                    size = float(record[size_col])
                except (TypeError, ValueError):
                    continue
                table[stem_of(record[name_col] or "")] = (size, size)
    return table


def _paired(directory: Path, pattern: str | None) -> DatasetSource | None:
    mask_dir = next((directory / d for d in MASK_DIRS if (directory / d).is_dir()), None)
    if not (directory / "images").is_dir() or mask_dir is None:
        return None
    source = DatasetSource(directory.name, directory, "paired", guess_modality(directory.name), [])
    masks: dict[str, Path] = {}
    for path in sorted(mask_dir.iterdir()):
        if is_readable_kind(path):
            masks[stem_of(path)] = path
        else:
            source.problems.append((path, "not a supported image file"))
    spacing = _spacing_table(directory)
    used: set[Path] = set()
    for image in sorted((directory / "images").iterdir()):
        if not is_readable_kind(image):
            source.problems.append((image, "not a supported image file"))
            continue
        stem = stem_of(image)
        mask = next((masks[stem + s] for s in MASK_SUFFIXES if stem + s in masks), None)
        if mask is None:
            source.problems.append((image, "no matching mask"))
            continue
        used.add(mask)
        source.pairs.append(Pair(image, [mask], subject_of(stem, pattern), spacing.get(stem)))
    source.problems += [(m, "no matching image") for m in masks.values() if m not in used]
    return source


def _npz(directory: Path, pattern: str | None) -> DatasetSource | None:
    files = sorted(directory.glob("*.npz"))
    if not files:
        return None
    modality = guess_modality(directory.name, *(stem_of(f) for f in files))
    source = DatasetSource(directory.name, directory, "npz", modality, [])
    for path in files:
        source.pairs.append(Pair(path, [path], subject_of(stem_of(path), pattern)))
    return source


def recognise(directory: Path, subject_pattern: str | None = None) -> DatasetSource | None:
    """The dataset in ``directory`` if its layout is one medkd knows, else ``None``."""
    return (
        _msd(directory)
        or _sam_med2d(directory, subject_pattern)
        or _paired(directory, subject_pattern)
        or _npz(directory, subject_pattern)
    )


def discover(root: str | Path, subject_pattern: str | None = None) -> list[DatasetSource]:
    """The dataset at ``root``, or each dataset in its immediate subfolders."""
    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"{root} is not a directory")
    source = recognise(root, subject_pattern)
    if source is not None:
        return [source]
    sources = [s for d in sorted(root.iterdir()) if d.is_dir() for s in [recognise(d, subject_pattern)] if s]
    if not sources:
        raise BadInput(
            f"no dataset layout recognised in {root} "
            "(expected dataset.json + imagesTr, index.json, images/ + masks/, or *.npz)"
        )
    return sources
