"""The runtime layer: where a model input is made and a mask comes back.

Preprocessing geometry and prompt encoding, the export layout that describes a graph, and the
segmenters of every backend (PyTorch, ONNX Runtime, TensorRT, AOTInductor) behind one call contract.
Evaluation, quantization, benchmarks and bundles use it; ``medkd.export`` only writes graphs.
"""

from medkd.runtime.prompts import Prompts
from medkd.runtime.segmenter import Segmenter, load_segmenter, wrap_module

__all__ = ["Prompts", "Segmenter", "load_segmenter", "wrap_module"]
