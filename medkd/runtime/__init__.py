"""The runtime layer: where a model input is made and a mask comes back.

Preprocessing geometry and prompt encoding, the export layout that describes a graph, and the
segmenters of every backend (PyTorch, ONNX Runtime, TensorRT, AOTInductor) behind one call contract.
Evaluation, quantization, benchmarks and bundles use it; ``medkd.export`` only writes graphs. The
exported-model path (ONNX Runtime) needs no torch; the PyTorch segmenter is imported on first use.
"""

from medkd.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "Prediction": "medkd.runtime.prompts",
        "Prompts": "medkd.runtime.prompts",
        "Segmenter": "medkd.runtime.segmenter",
        "load_segmenter": "medkd.runtime.segmenter",
        "wrap_module": "medkd.runtime.segmenter",
    },
)
