"""``medkd segment`` on a whole volume: objects by ``--box3d`` (or ``--box`` on the key ``--slice`` with
``--propagate``), propagated slice by slice (:mod:`medkd.runtime.volume`), a label volume on the source's
grid and its three orthogonal planes beside it, a line per object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medkd.cli.segment import report_objects
from medkd.errors import BadInput


def parse_box3d(text: str, shape: tuple[int, int, int]) -> np.ndarray:
    """x0,y0,z0,x1,y1,z1 (ends inclusive) inside a ``(D, H, W)`` volume."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 6 or not np.all(np.isfinite(values)) or any(values[i] > values[i + 3] for i in range(3)):
        raise BadInput(f"--box3d must be x0,y0,z0,x1,y1,z1 with each start <= its end, not '{text}'")
    depth, height, width = shape
    if values[3] < 0 or values[4] < 0 or values[5] < 0 or values[0] > width - 1 or values[1] > height - 1 or values[2] > depth - 1:
        raise BadInput(f"--box3d {text} lies outside the {width} x {height} x {depth} volume")
    return np.array(values)


def describe(record: dict[str, Any]) -> str:
    box = "-" if record["box3d"] is None else ",".join(map(str, record["box3d"]))
    volume = "" if record["volume_ml"] is None else f" ({record['volume_ml']} ml)"
    return f"object {record['object']}: {record['voxels']} voxels{volume} on {record['slices']} slices, box {box}"


def segment_volume_command(
    segmenter: Any, image: Path, out: Path, modality: str, box3d: list[str], boxes: list[str], key_slice: int | None,
    crop: str | None, batch: int, overlay: bool, as_json: bool,
) -> None:
    """Segment the objects of the volume ``image``, write the label volume (and overlay), report each object."""
    from medkd.data.progress import progress_bar
    from medkd.runtime.segment import parse_boxes
    from medkd.runtime.volume import box3d_prompt, key_slice_prompt, segment_volume
    from medkd.runtime.volume_files import load_volume, write_volume_outputs

    source = load_volume(image, modality)
    depth = len(source.gray)
    prompts = [box3d_prompt(parse_box3d(text, source.gray.shape), depth) for text in box3d or []]
    if boxes:
        prompts += [key_slice_prompt(box, key_slice, depth) for box in parse_boxes(boxes, source.gray.shape[1:])]
    with progress_bar(sum(p.slices for p in prompts), f"segmenting {image.name}", enabled=not as_json) as advance:
        result = segment_volume(segmenter, source.gray, prompts, crop, source.spacing, batch, advance)
    report_objects(result.records, "voxels", lambda: write_volume_outputs(result.labels, source, out, overlay), describe, as_json)
