"""ONNX Runtime sessions on the CPU, and ``OnnxSegmenter``, which runs an export artifact (ONNX encoder + ``SamOnnxModel``-interface decoder, or the
U-Net graph) with ONNX Runtime on the CPU, taking the same model inputs and prompts as the torch
``Segmenter`` and returning the same low-resolution mask logits, so ``medkd eval`` and
``medkd segment`` post-process them identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from medkd.errors import BadInput
from medkd.runtime.cpu_lowering import cpu_graph_file, cpu_model
from medkd.runtime.exported import ExportedSegmenter
from medkd.runtime.layout import read_layout


def cpu_options(threads: int | None = None) -> ort.SessionOptions:
    """Session options for the CPU execution provider."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Idle ORT threads otherwise spin and take the cores from the pre- and post-processing around them.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def cpu_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU execution provider; a Q/DQ graph is lowered for the CPU's
    integer kernels first (:mod:`medkd.runtime.cpu_lowering`). ``BadInput`` for a graph ONNX Runtime refuses."""
    model = cpu_model(path)
    try:
        return ort.InferenceSession(model, cpu_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
        raise BadInput(f"ONNX Runtime cannot load {path}: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (ONNX Runtime's run to many), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def decoder_feeds(embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs of the ``SamOnnxModel``-interface decoder for prompts on one embedding (no mask input,
    ``orig_im_size`` at the low-resolution mask size)."""
    low_res = 4 * embedding.shape[-1]
    return {
        "image_embeddings": embedding,
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": np.zeros((1, 1, low_res, low_res), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array([low_res, low_res], np.float32),
    }



class OnnxSegmenter(ExportedSegmenter):
    """An export artifact run by ONNX Runtime on the CPU; ``files`` names the file of a graph where the
    caller knows better than the layout (a bundle's manifest)."""

    def __init__(self, directory: str | Path, threads: int | None = None, files: Mapping[str, str] | None = None) -> None:
        super().__init__(read_layout(directory), str(directory))
        root = Path(directory)
        graphs, files = self.layout["graphs"], files or {}
        self.sessions = {name: cpu_session(root / files.get(name, cpu_graph_file(root, graphs[name])), threads) for name in self._needed()}

    def _needed(self) -> tuple[str, ...]:
        return ("unet",) if self.family == "unet" else ("encoder", "decoder")

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.sessions["encoder"].run(["image_embeddings"], {"image": images})[0]

    def decode(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        masks, scores = self.sessions["decoder"].run(["low_res_masks", "iou_predictions"], decoder_feeds(embedding, coords, labels))
        return masks, scores

    def unet(self, inputs: np.ndarray) -> np.ndarray:
        return self.sessions["unet"].run(["logits"], {"image": inputs})[0]
