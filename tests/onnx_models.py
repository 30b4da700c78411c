"""Tiny export artifacts built by hand, for tests that need a fast model whose masks are known.

``box_filler`` is a U-Net-family export whose logit is ``weight * box channel + bias``: with weight 2 and
bias -1 its mask is the prompt box itself (in model pixels), with weight 0 and bias -1 it finds nothing.
``box_threshold`` thresholds the image inside the box: its logit is ``min(2 * box - 1, image - 0.5)`` on
``x / 255`` inputs, so its mask is the pixels brighter than 127.5 inside the prompt box. Their layout is
what ``medkd export onnx`` writes for a U-Net, so every runtime path opens them as one.
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


def _unet_model(name: str, nodes: list[onnx.NodeProto], constants: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A U-Net-interface model: ``(batch, 4, S, S)`` image and box channel in, ``(batch, 1, S, S)`` logits out."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 4, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, INPUT_SIZE, INPUT_SIZE])],
        [numpy_helper.from_array(value, key) for key, value in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


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
    return _unet_model("box_filler", nodes, constants)


def _threshold_graph() -> onnx.ModelProto:
    """``min(2 * box - 1, image channel 0 - 0.5)``."""
    constants = {
        "zero": np.array([0], np.int64),
        "one_index": np.array([1], np.int64),
        "three": np.array([3], np.int64),
        "four": np.array([4], np.int64),
        "two": np.array(2.0, np.float32),
        "half": np.array(0.5, np.float32),
        "one": np.array(1.0, np.float32),
    }
    nodes = [
        helper.make_node("Slice", ["image", "three", "four", "one_index"], ["box"]),
        helper.make_node("Slice", ["image", "zero", "one_index", "one_index"], ["gray"]),
        helper.make_node("Mul", ["box", "two"], ["doubled"]),
        helper.make_node("Sub", ["doubled", "one"], ["inside"]),
        helper.make_node("Sub", ["gray", "half"], ["bright"]),
        helper.make_node("Min", ["inside", "bright"], ["logits"]),
    ]
    return _unet_model("box_threshold", nodes, constants)


def box_filler(directory: Path, weight: float = 2.0, bias: float = -1.0) -> Path:
    """An export artifact in ``directory`` whose one graph turns the box channel into logits."""
    return _unet_export(directory, _graph(weight, bias), Preprocessing(INPUT_SIZE, INPUT_SIZE))


def box_threshold(directory: Path) -> Path:
    """An export artifact in ``directory`` whose mask is the bright pixels (> 127.5) inside the box."""
    return _unet_export(directory, _threshold_graph(), Preprocessing(INPUT_SIZE, INPUT_SIZE, normalization="unit"))


def _unet_export(directory: Path, graph: onnx.ModelProto, preprocessing: Preprocessing) -> Path:
    directory.mkdir(parents=True)
    onnx.save(graph, str(directory / "unet.onnx"))
    layout = base_layout("unet", "unet", {}, None, preprocessing, "made by hand", 0)
    layout.update({"graphs": {"unet": graph_entry(directory / "unet.onnx", ["unet.onnx"])}, "opset": 17})
    write_manifest(directory, Manifest(kind=EXPORT_KIND, config={"export": layout}, files=hash_files(directory, ["unet.onnx"])))
    return directory
