"""AOTInductor ``.pt2`` packages made by ``medkd export aoti``, run through the ``Segmenter`` contract.

Each model in the package carries the export layout as metadata (``medkd_layout``), so the package
alone is enough to run it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch._inductor.package import load_package

from medkd.runtime.exported import ExportedSegmenter

LAYOUT_KEY = "medkd_layout"
PACKAGE_FILE = "model.pt2"


class AotiSegmenter(ExportedSegmenter):
    """A ``.pt2`` package made by :func:`export_aoti`, run through the ``Segmenter`` contract."""

    def __init__(self, path: str | Path) -> None:
        first = load_package(str(path), model_name="unet" if _has_model(path, "unet") else "encoder")
        super().__init__(json.loads(first.get_metadata()[LAYOUT_KEY]), str(path))
        self.device_name = self.layout["device"]
        names = ("unet",) if self.family == "unet" else ("encoder", "decoder")
        self.models = {name: load_package(str(path), model_name=name) for name in names}

    def _run(self, name: str, *arrays: np.ndarray) -> list[np.ndarray]:
        outputs = self.models[name]([torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays])
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        return [o.detach().cpu().clone().numpy() for o in outputs]  # outputs may alias reused buffers

    def encode(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate([self._run("encoder", image[None])[0] for image in images])

    def decode(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        masks, scores = self._run("decoder", embedding, coords, labels)
        return masks, scores

    def unet(self, inputs: np.ndarray) -> np.ndarray:
        return self._run("unet", inputs)[0]


def _has_model(path: str | Path, name: str) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(f"/aotinductor/{name}/" in entry or entry.startswith(f"aotinductor/{name}/") for entry in archive.namelist())
