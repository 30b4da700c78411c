"""Tiny export artifacts built by hand, for tests that need a fast model whose masks are known.

``box_filler`` is a U-Net-family export whose logit is ``weight * box channel + bias``: with weight 2 and
bias -1 its mask is the prompt box itself (in model pixels), with weight 0 and bias -1 it finds nothing.
Its layout is what ``medkd export onnx`` writes for a U-Net, so every runtime path opens it as one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from medkd.artifacts import Manifest, hash_files, write_manifest
from medkd.data.preprocessing import Preprocessing
from medkd.runtime.layout import EXPORT_KIND, base_layout, graph_entry

INPUT_SIZE = 64


def _graph(weight: float, bias: float) -> onnx.ModelProto:
    constants = {
        "starts": np.array([3], np.int64),
        "ends": np.array([4], np.int64),
        "axes": np.array([1], np.int64),
        "weight": np.array(weight, np.float32),
        "bias": np.array(bias, np.float32),
    }
    nodes = [
        helper.make_node("Slice", ["image", "starts", "ends", "axes"], ["box"]),
        helper.make_node("Mul", ["box", "weight"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "box_filler",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 4, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, INPUT_SIZE, INPUT_SIZE])],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def box_filler(directory: Path, weight: float = 2.0, bias: float = -1.0) -> Path:
    """An export artifact in ``directory`` whose one graph turns the box channel into logits."""
    directory.mkdir(parents=True)
    onnx.save(_graph(weight, bias), str(directory / "unet.onnx"))
    layout = base_layout("unet", "unet", {}, None, Preprocessing(INPUT_SIZE, INPUT_SIZE), "made by hand", 0)
    layout.update({"graphs": {"unet": graph_entry(directory / "unet.onnx", ["unet.onnx"])}, "opset": 17})
    write_manifest(directory, Manifest(kind=EXPORT_KIND, config={"export": layout}, files=hash_files(directory, ["unet.onnx"])))
    return directory
