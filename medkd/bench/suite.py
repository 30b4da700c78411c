"""What the benchmark suites in ``benchmarks/`` share: result file names, exports made once, real data."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from medkd.artifacts import MANIFEST_NAME, read_manifest
from medkd.bench.device import device_slug
from medkd.bench.schema import entry_key
from medkd.errors import BadInput

DEFAULT_EXPORTS = Path("runs") / "bench" / "exports"
VALIDATION_DATASET = "ct-organs"


def shared_data() -> Path:
    """``$MEDKD_DATA``, else ``../shared/data`` beside the working directory."""
    return Path(os.environ.get("MEDKD_DATA", Path("..") / "shared" / "data"))


def results_path(folder: Path, suite: str, device: dict[str, Any]) -> Path:
    """``FOLDER/SUITE-YYYY-MM-DD-DEVICE.json``: results of this machine, by date and device."""
    return folder / f"{suite}-{_dt.date.today().isoformat()}-{device_slug(device)}.json"


def portable_cache(cache: dict[str, Any] | None) -> dict[str, Any]:
    """A training's cache metrics (hits, misses) for a results JSON: without this machine's cache directory."""
    return {key: value for key, value in (cache or {}).items() if key != "directory"}


def validation_manifest(exports: Path, data: Path | None) -> Path:
    """``data``, or a manifest of the real CT slices written once into ``exports`` (export validation images)."""
    if data is not None:
        return data
    from medkd.data import build_manifest, save_manifest

    target = exports / "validation.jsonl"
    if not target.is_file():
        root = shared_data() / VALIDATION_DATASET
        if not root.is_dir():
            raise BadInput(f"no data to validate exports on at {root}: pass --data MANIFEST (medkd data index or medkd data synth)")
        save_manifest(build_manifest(root, progress=False), target)
    return target


def ensure_export(source: str, exports: Path, data: Path) -> Path:
    """The ONNX export of ``source`` (zoo name or model artifact) under ``exports``, made once and validated."""
    from medkd.export.onnx_stage import OnnxOptions, export_onnx_artifact

    out = exports / Path(source).name
    if (out / MANIFEST_NAME).is_file() and read_manifest(out).config.get("export", {}).get("model", {}).get("source") == source:
        return out
    export_onnx_artifact(source, out, data, OnnxOptions(validate_samples=1, split=None))
    return out


def find_entry(entries: list[dict[str, Any]], model: str, backend: str, graph: str | None = None) -> dict[str, Any] | None:
    """The first entry of ``model`` on ``backend`` (and ``graph``)."""
    for entry in entries:
        if entry["model"] == model and entry["backend"] == backend and graph in (None, entry["graph"]):
            return entry
    return None


def key_text(entry: dict[str, Any]) -> str:
    return "/".join(entry_key(entry))
