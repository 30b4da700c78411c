"""The runtime layer: where a model input is made and a mask comes back.

Preprocessing geometry and prompt encoding, the export layout that describes a graph, and the
segmenters of every backend (PyTorch, ONNX Runtime, TensorRT, AOTInductor) behind one call contract.
Evaluation, quantization, benchmarks and bundles use it; ``medkd.export`` only writes graphs. The
exported-model path (ONNX Runtime) needs no torch; the PyTorch segmenter is imported on first use.
"""

from medkd.lazy import lazy_attributes

_EXPORTS = {
    "Prediction": "medkd.runtime.prompts",
    "Prompts": "medkd.runtime.prompts",
    "Segmenter": "medkd.runtime.segmenter",
    "load_segmenter": "medkd.runtime.segmenter",
    "wrap_module": "medkd.runtime.segmenter",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
