"""Reference (teacher) masks computed once per object and reused by every evaluation that compares with them.

Agreement with the teacher needs the teacher's mask of every evaluated object; a run evaluates many
students against one teacher, whose encoder may cost 20x theirs. Masks are stored bit-packed, one
``.npz`` per object, under a key naming the teacher's weights (a digest of a PyTorch model's state,
or the file hashes of an export), its preprocessing, the prompt and the object (image, slice, label,
box); a changed teacher or preprocessing gives new keys, so stale masks are never read. Entries are
written atomically; one that fails to load is recomputed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from medkd.artifacts import atomic_write_bytes, read_manifest, sha256_json
from medkd.data.manifest import ManifestRow
from medkd.data.preprocessing import Preprocessing
from medkd.paths import cache_dir
from medkd.zoo.checkpoints import state_dict_digest

FORMAT = 1


def default_reference_dir() -> Path:
    return cache_dir() / "reference-masks"


def model_fingerprint(segmenter: Any) -> str:
    """What identifies a segmenter's weights: a digest of a PyTorch module's state, or an export's file hashes."""
    module = getattr(segmenter, "module", None)
    if isinstance(module, nn.Module):
        return state_dict_digest(module)
    source = Path(segmenter.source)
    manifest_dir = source if source.is_dir() else source.parent
    return sha256_json({"source_kind": source.suffix or "export", "files": read_manifest(manifest_dir).files})


class ReferenceMasks:
    """Get and put one segmenter's binary masks (original pixels) by manifest object."""

    def __init__(self, directory: str | Path, segmenter: Any, preprocessing: Preprocessing, prompt: str) -> None:
        self.directory = Path(directory)
        spec = {key: value for key, value in preprocessing.to_dict().items() if key != "rules"}
        self.context = {"format": FORMAT, "model": model_fingerprint(segmenter), "preprocessing": spec, "prompt": prompt}

    def _path(self, row: ManifestRow) -> Path:
        key = sha256_json({**self.context, "image": row.image, "slice": row.slice, "label": row.label, "box": list(row.box)})
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, row: ManifestRow) -> np.ndarray | None:
        path = self._path(row)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                shape = tuple(int(v) for v in stored["shape"])
                return np.unpackbits(stored["bits"], count=int(np.prod(shape))).reshape(shape).astype(bool)
        except (OSError, ValueError, KeyError, EOFError):
            return None

    def put(self, row: ManifestRow, mask: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, bits=np.packbits(mask.astype(bool).ravel()), shape=np.asarray(mask.shape))
        atomic_write_bytes(self._path(row), buffer.getvalue())
