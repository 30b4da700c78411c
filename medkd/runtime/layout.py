"""The export artifact's layout: what each graph file is, its tensors, and how to feed it.

``describe(...)`` builds the ``config.export`` section of the export manifest, which runtimes (and the
bundle stage) read instead of guessing: graph files with input / output names, shapes (symbolic
dimensions as names) and dtypes, opset, the preprocessing spec the model was trained with
(``Preprocessing.to_dict()``), the prompt format, and the TensorRT optimization profiles (min / opt /
max shape per dynamic input). Every ONNX graph also carries the spec and the prompt format in its own
``metadata_props`` (``medkd.preprocessing``, ``medkd.prompts``: JSON), so the file alone is enough.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from medkd.artifacts import atomic_path, read_manifest
from medkd.data.preprocessing import METADATA_KEY, Preprocessing, is_spec
from medkd.errors import BadInput

EXPORT_KIND = "export"
PROMPTS_KEY = "medkd.prompts"
SAM_PROMPTS = (
    "points (N, P, 2) x, y in model pixels (the image, or its crop window, after the preprocessing's resize) with labels (N, P): 1 foreground, "
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


def read_onnx(path: str | Path) -> onnx.ModelProto:
    """The graph at ``path`` without its external weights; ``BadInput`` for a file that is not ONNX."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf and I/O errors vary
        raise BadInput(f"{path} is not a readable ONNX file: {exc}") from exc


def graph_entry(path: Path, files: list[str]) -> dict[str, Any]:
    """A graph's manifest entry, read from the ONNX file itself."""
    model = read_onnx(path)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "file": files[0],
        "files": files,
        "opset": opset,
        "inputs": tensor_specs(model.graph.input),
        "outputs": tensor_specs(model.graph.output),
    }


def graph_metadata(layout: dict[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` every ONNX graph of ``layout`` carries: its preprocessing and prompt format (JSON)."""
    return {
        METADATA_KEY: json.dumps(layout["preprocessing"], sort_keys=True),
        PROMPTS_KEY: json.dumps(layout["prompts"], sort_keys=True),
    }


def stamp_metadata(source: Path, metadata: dict[str, str], target: Path | None = None) -> None:
    """Write ``source`` with ``metadata`` set in its ``metadata_props`` to ``target`` (default: in place),
    atomically; external weights stay where they are (a ``target`` beside ``source``)."""
    model = onnx.load(str(source), load_external_data=False)
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    with atomic_path(target or source) as tmp:
        onnx.save_model(model, str(tmp))


def read_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in read_onnx(path).metadata_props}


def read_layout(directory: str | Path) -> dict[str, Any]:
    """The ``config.export`` section of an export artifact (``BadInput`` for anything else)."""
    manifest = read_manifest(directory)
    layout = manifest.config.get("export")
    if manifest.kind != EXPORT_KIND or not isinstance(layout, dict):
        raise BadInput(f"{directory} holds a '{manifest.kind}' artifact, not a medkd export")
    return layout


def layout_preprocessing(layout: dict[str, Any], source: str) -> Preprocessing:
    """The preprocessing spec a layout records; a layout older than specs gets its architecture's
    default from the zoo (:func:`medkd.zoo.recorded_preprocessing`, which needs the training stack)."""
    if is_spec(layout.get("preprocessing")):
        return Preprocessing.from_dict(layout["preprocessing"])
    from medkd.zoo import recorded_preprocessing

    return recorded_preprocessing(layout, source)


def base_layout(name: str, family: str, kwargs: dict[str, Any], grid: int | None, preprocessing: Preprocessing, source: str, point_slots: int) -> dict[str, Any]:
    """The parts of a layout every export format shares: model, preprocessing spec and prompt format."""
    return {
        "model": {"name": name, "family": family, "kwargs": kwargs, "embedding_grid": grid, "source": source},
        "preprocessing": preprocessing.to_dict(),
        "prompts": {"format": UNET_PROMPTS if family == "unet" else SAM_PROMPTS, "point_slots": None if family == "unet" else point_slots},
    }
