"""What the export changes in the traced modules: ``LayerNorm2d`` becomes one ``LayerNormalization``."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from medkd.export.graphs import traceable

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from mobile_sam.modeling.tiny_vit_sam import LayerNorm2d as TinyViTLayerNorm2d


class Neck(nn.Module):
    """SAM's neck: 1 x 1 convolution, LayerNorm2d, 3 x 3 convolution, LayerNorm2d (TinyViT's copy)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(8, 16, 1), LayerNorm2d(16), nn.Conv2d(16, 16, 3, padding=1), TinyViTLayerNorm2d(16))
        for norm in (self.layers[1], self.layers[3]):
            nn.init.normal_(norm.weight)
            nn.init.normal_(norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_layer_norm_2d_exports_as_layer_normalization_with_the_same_values():
    torch.manual_seed(0)
    neck = Neck().eval()
    x = torch.randn(2, 8, 6, 5) * 3 + 1
    expected = neck(x).detach().numpy()
    buffer = io.BytesIO()
    with traceable(neck), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(neck, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}})
    assert not any("forward" in vars(module) for module in neck.modules())  # the modules are themselves again
    graph = onnx.load_from_string(buffer.getvalue()).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("LayerNormalization") == 2 and "ReduceMean" not in ops
    got = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    one = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"x": x[:1].numpy()})[0]
    np.testing.assert_allclose(one, expected[:1], rtol=1e-4, atol=1e-4)  # the batch axis stays dynamic
