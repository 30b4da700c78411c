"""ONNX Runtime workloads (CPU execution provider) for ONNX files, export artifacts and quantized artifacts.

An export artifact times the graphs medkd's ONNX runtime runs (``encoder`` and ``decoder``, or
``unet``; ``--graph decoder_trt`` too; INT8 graphs in their CPU-lowered files where the artifact has them); any other artifact directory times the ONNX files its manifest
lists. ``ort-int8`` takes only graphs with QuantizeLinear / DequantizeLinear nodes (INT8 Q/DQ).
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from medkd.artifacts import MANIFEST_NAME, read_manifest
from medkd.bench.inputs import onnx_feeds
from medkd.bench.subject import Subject, artifact_id, select_graphs
from medkd.bench.timing import Workload
from medkd.errors import BadInput
from medkd.runtime.cpu_lowering import cpu_graph_file, has_qdq
from medkd.runtime.layout import EXPORT_KIND
from medkd.runtime.onnx_runtime import cpu_session

ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool"}
RUNTIME_GRAPHS = {"sam": ("encoder", "decoder"), "unet": ("unet",)}


def _role(session: ort.InferenceSession, stem: str) -> str:
    """What a graph is, from its inputs: encoder, decoder (``SamOnnxModel``), decoder_trt, unet."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if "image" in inputs and len(inputs["image"]) == 4:
        return "unet" if inputs["image"][1] == 4 else "encoder"
    if "image_embeddings" in inputs:
        return "decoder" if "orig_im_size" in inputs else "decoder_trt"
    return stem


def _export_layout(directory: Path) -> dict | None:
    """The layout of an ONNX export artifact in ``directory``, if it is one."""
    if not (directory / MANIFEST_NAME).is_file():
        return None
    manifest = read_manifest(directory)
    layout = manifest.config.get("export")
    return layout if manifest.kind == EXPORT_KIND and isinstance(layout, dict) and "graphs" in layout else None


def _graph_files(path: Path) -> tuple[str, dict[str, Path], list[str]]:
    """Model name, graph name -> ONNX file, and the graphs timed by default."""
    if path.is_file():
        if path.suffix != ".onnx":
            raise BadInput(f"--backend ort takes ONNX files or artifact directories, not {path.name}")
        layout = _export_layout(path.parent)
        for name, entry in (layout or {}).get("graphs", {}).items():
            if entry["file"] == path.name:
                return layout["model"]["name"], {name: path}, [name]
        return path.stem, {path.stem: path}, [path.stem]
    if not (path / MANIFEST_NAME).is_file():
        raise BadInput(f"{path} is neither an ONNX file nor a medkd artifact directory")
    manifest = read_manifest(path)
    layout = _export_layout(path)
    if layout is not None:
        files = {name: path / cpu_graph_file(path, entry) for name, entry in layout["graphs"].items()}
        return layout["model"]["name"], files, list(RUNTIME_GRAPHS[layout["model"]["family"]])
    onnx_files = sorted(name for name in manifest.files if name.endswith(".onnx"))
    if not onnx_files:
        raise BadInput(f"{path} holds a '{manifest.kind}' artifact without ONNX files")
    model = manifest.config.get("model", {}).get("name") or manifest.config.get("export", {}).get("model", {}).get("name") or path.name
    files = {Path(name).stem: path / name for name in onnx_files}
    return model, files, list(files)


def open_onnx(source: str, batch: int, graphs: list[str] | None, threads: int, int8: bool = False) -> Subject:
    """``source`` as ONNX Runtime workloads with ``threads`` intra-op threads."""
    path = Path(source)
    if not path.exists():
        raise BadInput(f"--backend {'ort-int8' if int8 else 'ort'} runs ONNX: {source} is no file or directory (export a zoo model first: medkd export onnx)")
    model, files, default = _graph_files(path)
    if int8:
        files = {name: file for name, file in files.items() if has_qdq(file)}
        default = [name for name in default if name in files] or list(files)
        if not files:
            raise BadInput(f"{source} has no ONNX graph with QuantizeLinear / DequantizeLinear nodes: not an INT8 Q/DQ model (use --backend ort)")
    layout = _export_layout(path if path.is_dir() else path.parent) or {}
    float_precision = "fp16" if layout.get("precision") == "fp16" else "fp32"  # medkd quantize --precision fp16
    workloads = []
    for name in select_graphs(list(files), graphs) if graphs else default:
        session = cpu_session(files[name], threads)
        specs = [{"name": i.name, "shape": i.shape, "dtype": ORT_TYPES.get(i.type, "float32")} for i in session.get_inputs()]
        feeds = onnx_feeds(specs, batch)
        graph = _role(session, name) if path.is_file() else name
        workloads.append(
            Workload(
                graph,
                lambda session=session, feeds=feeds: session.run(None, feeds),
                {key: list(value.shape) for key, value in feeds.items()},
                batch,
                file=files[name].name,
                precision="int8" if has_qdq(files[name]) else float_precision,
            )
        )
    notes = [f"ONNX Runtime {ort.__version__}, CPUExecutionProvider, {threads} intra-op threads"]
    return Subject(model, source, "ort-int8" if int8 else "ort", "int8" if int8 else "fp32", "cpu", workloads, artifact_id(path), notes)
