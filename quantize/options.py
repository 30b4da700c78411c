"""What ``medkd quantize`` is asked for: the recipe, the objects it calibrates and measures on, the gate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from medkd.quantize.recipe import Recipe

from medkd.errors import BadInput
from medkd.runtime.cpu_lowering import has_vnni

PRECISIONS = ("int8", "fp16")


@dataclass
class QuantizeOptions:
    """What ``medkd quantize`` was asked for."""

    recipe: Recipe = field(default_factory=Recipe)
    samples: int = 32
    calib_split: str = "train"
    crop: str | None = None  # None: the export's own (trained) crop; a value overrides it, with a warning
    max_dsc_drop: float | None = None
    gate_samples: int = 16
    gate_confidence: float = 0.9  # the gate holds when the drop is within bounds at this one-sided confidence
    test_samples: int = 16
    keep_float: tuple[str, ...] = ()
    graphs: tuple[str, ...] = ()  # graphs to quantize (empty: all; decoder_trt follows decoder)
    ort_fusion: bool = True  # leave in float what ONNX Runtime's CPU kernels cannot fuse
    precision: str = "int8"
    sweep: bool = False
    trt_cache: bool = True
    cpu_graphs: bool = True  # also write each INT8 graph lowered for ONNX Runtime's CPU kernels
    tensorrt: str = "10.3"
    threads: int = 2
    latency_runs: int = 20
    progress: bool = True

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise BadInput(f"--precision must be one of {', '.join(PRECISIONS)}, not '{self.precision}'")
        if self.max_dsc_drop is not None and not 0.0 <= self.max_dsc_drop < 1.0:
            raise BadInput(f"--max-dsc-drop is a DSC fraction between 0 and 1 (0.01 = 1 point), not {self.max_dsc_drop}")
        if self.recipe.cpu_weight_bits == 8 and self.precision == "int8" and not has_vnni():
            raise BadInput("--cpu-weight-bits 8 needs a CPU with VNNI to measure on (without it ONNX Runtime's int8 kernels saturate); this CPU has none")
        if not 0.5 <= self.gate_confidence < 1.0:
            raise BadInput(f"--gate-confidence is a probability from 0.5 (the mean drop alone) to below 1, not {self.gate_confidence}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "recipe": self.recipe.to_dict()}
