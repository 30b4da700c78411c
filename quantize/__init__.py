"""Post-training INT8 quantization calibrated on medical images.

``quantize_export(export_dir, out, data, QuantizeOptions(...))`` turns an export artifact into one of
symmetric int8 Q/DQ graphs (ONNX Runtime or NNCF), gated on DSC, with TensorRT calibration caches;
``precision="fp16"`` makes FP16 graphs with normalisation, softmax and attention bias in FP32.
"""

from medkd.quantize.options import QuantizeOptions
from medkd.quantize.recipe import BACKENDS, CALIBRATION_METHODS, Recipe
from medkd.quantize.stage import quantize_export
from medkd.quantize.symmetry import qdq_problems, require_symmetric
from medkd.quantize.trt_cache import read_calibration_cache, write_calibration_cache

__all__ = [
    "BACKENDS",
    "CALIBRATION_METHODS",
    "QuantizeOptions",
    "Recipe",
    "qdq_problems",
    "quantize_export",
    "read_calibration_cache",
    "require_symmetric",
    "write_calibration_cache",
]
