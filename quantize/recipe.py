"""What to quantize and how: backend, calibration method, operator types, SmoothQuant.

The default recipe quantizes the weights of ``MatMul`` / ``Gemm`` / dense ``Conv`` per output channel,
symmetric int8, and their input activations per tensor, symmetric int8 (zero point 0), in Q/DQ format.
Outputs of matrix products are not re-quantized, so ONNX Runtime runs them as ``MatMulIntegerToFloat``
and LayerNorm, Softmax, GELU and the attention bias stay in float; convolution outputs are (the form
``QLinearConv`` and TensorRT's fused convolutions take). Products of two activations (attention
``q @ k`` and ``attn @ v``) and grouped (depthwise) convolutions stay in float unless asked for.
``cpu_weight_bits`` says how ONNX Runtime's CPU kernels take the weights (and so what the DSC gate
measures): 7 bits on any x86 CPU, or 8 on CPUs with VNNI only (:mod:`medkd.runtime.cpu_lowering`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

from medkd.errors import BadInput
from medkd.runtime.cpu_lowering import WEIGHT_BITS

BACKENDS = ("ort", "nncf")
CALIBRATION_METHODS = ("minmax", "mean-minmax", "percentile", "entropy")
QUANTIZABLE_OP_TYPES = ("MatMul", "Gemm", "Conv")
DEFAULT_OP_TYPES = ("MatMul", "Gemm", "Conv")


@dataclass(frozen=True)
class Recipe:
    """One post-training quantization recipe."""

    backend: str = "ort"
    method: str = "minmax"
    percentile: float = 99.999
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    attention_matmuls: bool = False
    smooth_quant: float | None = None
    cpu_weight_bits: int = 7

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise BadInput(f"--backend must be one of {', '.join(BACKENDS)}, not '{self.backend}'")
        if self.method not in CALIBRATION_METHODS:
            raise BadInput(f"--method must be one of {', '.join(CALIBRATION_METHODS)}, not '{self.method}'")
        unknown = set(self.op_types) - set(QUANTIZABLE_OP_TYPES)
        if unknown or not self.op_types:
            raise BadInput(f"--op-types takes {', '.join(QUANTIZABLE_OP_TYPES)}, not '{','.join(self.op_types)}'")
        if not 90.0 < self.percentile < 100.0:
            raise BadInput(f"--percentile must lie between 90 and 100, not {self.percentile}")
        if self.smooth_quant is not None and not 0.0 < self.smooth_quant < 1.0:
            raise BadInput(f"--smooth-quant (alpha) must lie between 0 and 1, not {self.smooth_quant}")
        if self.smooth_quant is not None and self.backend == "ort" and importlib.util.find_spec("neural_compressor") is None:
            raise BadInput("SmoothQuant on the ort backend needs neural-compressor (pip install neural-compressor); --backend nncf has its own")
        if self.cpu_weight_bits not in WEIGHT_BITS:
            raise BadInput(f"--cpu-weight-bits must be one of {', '.join(map(str, WEIGHT_BITS))}, not {self.cpu_weight_bits}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
