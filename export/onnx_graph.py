"""Export one torch module to one ONNX file: TorchScript-based exporter, onnxslim, full checker.

The TorchScript-based exporter (``dynamo=False``) traces SAM's decoder and TinyViT with dynamic batch
and prompt axes; the graph is then simplified with onnxslim and passes ``onnx.checker`` with
``full_check`` (shape inference included). Graphs over 2 GiB keep their weights in one external data
file beside them (``NAME.onnx.data``).
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxslim
import torch
from torch import nn

from medkd.errors import BadInput

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 17, 20  # LayerNormalization needs 17; TensorRT's parser on Jetson takes <= 20
PROTOBUF_LIMIT = 2**31 - 2**20


@dataclass(frozen=True)
class GraphIO:
    """Input and output names of a graph and its dynamic axes (``{name: {axis: label}}``)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadInput(f"--opset must be between {MIN_OPSET} and {MAX_OPSET} (TensorRT on Jetson parses <= 20), not {opset}")
    return opset


def _weight_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) or onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


def export_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, io: GraphIO, opset: int = DEFAULT_OPSET) -> list[str]:
    """Write ``module`` traced on ``args`` to ``path``; returns the files written (the graph, its data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        raw = Path(scratch) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                args,
                str(raw),
                dynamo=False,
                opset_version=opset,
                input_names=list(io.inputs),
                output_names=list(io.outputs),
                dynamic_axes=io.dynamic_axes,
                do_constant_folding=True,
            )
        model = onnxslim.slim(onnx.load(str(raw)))
        large = _weight_bytes(model) > PROTOBUF_LIMIT
        staged = Path(scratch) / path.name
        data_name = f"{path.name}.data"
        if large:
            onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name)
        else:
            onnx.save_model(model, str(staged))
        onnx.checker.check_model(str(staged), full_check=True)
        written = [path.name]
        if large:
            (Path(scratch) / data_name).replace(path.parent / data_name)
            written.append(data_name)
        staged.replace(path)
    return written


