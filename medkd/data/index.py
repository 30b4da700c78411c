"""Index dataset folders into a :class:`DataManifest`: read, validate, list objects, split by subject.

Every image and mask is decoded in full, so truncated files, broken headers, NaN / Inf values, masks
of another size and empty masks are found here, listed as skipped with the reason, and never reach
training. Volumes are sliced along one array axis; only slices where a label appears give rows, one
per (slice, label).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from medkd.data.layouts import DatasetSource, Pair, discover
from medkd.data.manifest import DataManifest, ManifestRow
from medkd.data.modality import canonical_modality
from medkd.data.objects import objects_2d
from medkd.data.progress import track
from medkd.data.readers import (
    DEFAULT_AXIS,
    NIFTI_SUFFIXES,
    Decoded,
    ReadError,
    read_image,
    read_mask,
    stem_of,
    suffix_of,
)
from medkd.data.splits import (
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    assign_splits,
    check_fractions,
)
from medkd.errors import BadInput


def _spatial_shape(decoded: Decoded) -> tuple[int, ...]:
    array = decoded.array
    if decoded.volume:
        return array.shape
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3):
        return array.shape[:2]
    raise ReadError(f"image of shape {array.shape} is neither gray, RGB nor a volume")


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _pair_rows(
    pair: Pair, source: DatasetSource, modality: str, root: Path, axis: int, skipped: list[tuple[Path, str]]
) -> list[ManifestRow]:
    """Rows (split not yet assigned) of one pair; problems with the image or a mask go to ``skipped``."""
    try:
        image = read_image(pair.image, axis)
        shape = _spatial_shape(image)
    except ReadError as exc:
        skipped.append((pair.image, str(exc)))
        return []
    slice_axis = axis if suffix_of(pair.image) in NIFTI_SUFFIXES else 0
    rows: list[ManifestRow] = []
    for index, mask_path in enumerate(pair.masks):
        try:
            mask = read_mask(mask_path, axis)
        except ReadError as exc:
            skipped.append((mask_path, str(exc)))
            continue
        if mask.array.shape != shape:
            skipped.append((mask_path, f"mask shape {mask.array.shape} differs from image shape {shape}"))
            continue
        spacing = pair.spacing or (image.spacing or mask.spacing or (None, None))[-2:]
        spacing = None if spacing[0] is None else tuple(float(s) for s in spacing)
        mask_name = pair.mask_names[index] if pair.mask_names else None
        planes = enumerate(mask.array) if mask.volume else [(None, mask.array)]
        found = [
            ManifestRow(
                id=f"{source.name}/{stem_of(mask_path)}{'' if slice_index is None else f'@{slice_index}'}#{obj.label}",
                dataset=source.name,
                subject=pair.subject,
                split="",
                modality=modality,
                image=_relative(pair.image, root),
                mask=_relative(mask_path, root),
                slice=slice_index,
                axis=None if slice_index is None else slice_axis,
                label=obj.label,
                label_name=mask_name or source.label_names.get(obj.label),
                box=obj.box,
                area=obj.area,
                height=plane.shape[0],
                width=plane.shape[1],
                spacing=spacing,
            )
            for slice_index, plane in planes
            if plane.any()
            for obj in objects_2d(plane)
        ]
        if not found:
            skipped.append((mask_path, "mask has no foreground"))
        rows += found
    return rows


def build_manifest(
    root: str | os.PathLike,
    seed: int = DEFAULT_SEED,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    axis: int = DEFAULT_AXIS,
    modalities: Mapping[str, str] | None = None,
    subject_pattern: str | None = None,
    progress: bool = True,
) -> DataManifest:
    """Index the dataset at ``root`` (or each dataset below it) into rows with subject-level splits.

    ``modalities`` maps dataset names to a modality, overriding the recognised one; ``axis`` is the
    NIfTI array axis that volumes are sliced along; ``subject_pattern`` is a regular expression whose
    first group is the subject id of an image stem. Raises ``BadInput`` when nothing usable remains.
    """
    root = Path(root).resolve()
    fractions = check_fractions(fractions)
    if axis not in (0, 1, 2):
        raise BadInput(f"slice axis must be 0, 1 or 2, not {axis}")
    sources = discover(root, subject_pattern)
    overrides = {name: canonical_modality(m) for name, m in (modalities or {}).items()}
    unknown = set(overrides) - {s.name for s in sources}
    if unknown:
        raise BadInput(f"no dataset named {', '.join(sorted(unknown))} in {root}")
    modality_of = {s.name: overrides.get(s.name, s.modality) for s in sources}
    found: dict[str, list[ManifestRow]] = {s.name: [] for s in sources}
    skipped: list[tuple[Path, str]] = []
    work = ((s, p) for s in sources for p in s.pairs)
    for source, pair in track(work, sum(len(s.pairs) for s in sources), f"indexing {root.name}", enabled=progress):
        found[source.name] += _pair_rows(pair, source, modality_of[source.name], root, axis, skipped)
    rows: list[ManifestRow] = []
    datasets: dict[str, dict] = {}
    for source in sources:
        skipped += source.problems
        splits = assign_splits(source.name, (row.subject for row in found[source.name]), seed, fractions)
        rows += [replace(row, split=splits[row.subject]) for row in found[source.name]]
        datasets[source.name] = {
            "layout": source.layout,
            "modality": modality_of[source.name],
            "path": _relative(source.directory, root),
            "label_names": {str(k): v for k, v in source.label_names.items()},
        }
    if not rows:
        raise BadInput(f"nothing usable in {root}: {len(skipped)} file(s) skipped")
    return DataManifest(
        root=root,
        rows=rows,
        datasets=datasets,
        split_seed=seed,
        split_fractions=fractions,
        skipped=[{"path": _relative(p, root), "reason": r} for p, r in skipped],
    )
