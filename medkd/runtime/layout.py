"""The export artifact's layout: what each graph file is, its tensors, and how to feed it.

``describe(...)`` builds the ``config.export`` section of the export manifest, which runtimes (and the
bundle stage) read instead of guessing: graph files with input / output names, shapes (symbolic
dimensions as names) and dtypes, opset, the preprocessing that makes model inputs, the prompt format,
and the TensorRT optimization profiles (min / opt / max shape per dynamic input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from medkd.artifacts import read_manifest
from medkd.data.geometry import PIXEL_MEAN, PIXEL_STD
from medkd.errors import BadInput

EXPORT_KIND = "export"
SAM_PROMPTS = (
    "points (N, P, 2) x, y in model pixels (after the longest-side resize) with labels (N, P): 1 foreground, "
    "0 background, 2 / 3 box top-left / bottom-right corner, -1 padding; without a box add one padding "
    "point (0, 0, -1), as SamOnnxModel clients do"
)
UNET_PROMPTS = "box channel: 1 inside the model-pixel box (ends inclusive), 0 elsewhere, appended as the 4th input channel"


def tensor_specs(values: Any) -> list[dict[str, Any]]:
    """Name, shape (ints, or dimension names) and element type of ONNX graph inputs or outputs."""
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        specs.append({"name": value.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name})
    return specs


def graph_entry(path: Path, files: list[str]) -> dict[str, Any]:
    """A graph's manifest entry, read from the ONNX file itself."""
    model = onnx.load(str(path), load_external_data=False)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "file": files[0],
        "files": files,
        "opset": opset,
        "inputs": tensor_specs(model.graph.input),
        "outputs": tensor_specs(model.graph.output),
    }


def preprocessing(input_size: int) -> dict[str, Any]:
    return {
        "input_size": input_size,
        "channels": "RGB uint8 after MedSAM intensity normalisation (CT window 40/400, else 0.5-99.5 percentiles)",
        "resize": "longest side to input_size (segment_anything ResizeLongestSide, PIL bilinear)",
        "pixel_mean": list(PIXEL_MEAN),
        "pixel_std": list(PIXEL_STD),
        "padding": "zeros, bottom and right, to input_size x input_size (after normalisation)",
        "crop": "none",
        "layout": "NCHW float32",
    }


def read_layout(directory: str | Path) -> dict[str, Any]:
    """The ``config.export`` section of an export artifact (``BadInput`` for anything else)."""
    manifest = read_manifest(directory)
    layout = manifest.config.get("export")
    if manifest.kind != EXPORT_KIND or not isinstance(layout, dict):
        raise BadInput(f"{directory} holds a '{manifest.kind}' artifact, not a medkd export")
    return layout


def base_layout(name: str, family: str, kwargs: dict[str, Any], grid: int | None, size: int, source: str, point_slots: int) -> dict[str, Any]:
    """The parts of a layout every export format shares: model, preprocessing and prompt format."""
    return {
        "model": {"name": name, "family": family, "kwargs": kwargs, "embedding_grid": grid, "source": source},
        "preprocessing": preprocessing(size),
        "prompts": {"format": UNET_PROMPTS if family == "unet" else SAM_PROMPTS, "point_slots": None if family == "unet" else point_slots},
    }
