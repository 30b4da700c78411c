"""Deployment targets and what a bundle for each carries.

CPU targets take ONNX (FP32 and INT8) for ONNX Runtime. Jetson targets also take FP16 ONNX and the
TensorRT engines built for their GPU (Orin: compute capability 8.7), with the ONNX opset their TensorRT
parser reads (<= 20 on JetPack 6, <= 17 on JetPack 5); engines for any other GPU are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from medkd.bundle.schema import EngineSpec, TargetInfo
from medkd.errors import BadInput


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    platform: str
    onnx_precisions: tuple[str, ...]
    compute_capability: str | None
    max_opset: int | None
    jetpack: str | None

    def onnx_exclusion(self, precision: str, opset: int | None) -> str | None:
        """Why an ONNX variant does not belong in this target's bundle (``None``: it does)."""
        if precision not in self.onnx_precisions:
            return f"{precision} ONNX is not for {self.name} (takes {', '.join(self.onnx_precisions)})"
        if self.max_opset is not None and opset is not None and opset > self.max_opset:
            return f"opset {opset} is above {self.max_opset}, the most TensorRT on {self.name} parses"
        return None

    def engine_exclusion(self, engines: list[EngineSpec]) -> str | None:
        """Why a set of engines does not belong in this target's bundle (``None``: it does)."""
        if self.compute_capability is None:
            return f"{self.name} runs ONNX Runtime, not TensorRT engines"
        other = sorted({str(e.compute_capability) for e in engines if e.compute_capability != self.compute_capability})
        if other:
            return f"engines built for compute capability {', '.join(other)}; {self.name} needs {self.compute_capability}"
        return None

    def info(self) -> TargetInfo:
        return TargetInfo(self.name, self.description, self.platform, self.compute_capability, self.max_opset, self.jetpack)


TARGETS = {
    target.name: target
    for target in (
        Target("x86-cpu", "x86-64 CPU, ONNX Runtime", "linux-x86_64", ("fp32", "int8"), None, None, None),
        Target("arm64-cpu", "64-bit Arm CPU, ONNX Runtime", "linux-aarch64", ("fp32", "int8"), None, None, None),
        Target(
            "jetson-orin",
            "NVIDIA Jetson Orin (Ampere GPU, sm_87): TensorRT engines built on Orin, ONNX for ONNX Runtime or on-device builds",
            "linux-aarch64",
            ("fp32", "fp16", "int8"),
            "8.7",
            20,
            "6.x",
        ),
        Target(
            "jetson-xavier",
            "NVIDIA Jetson Xavier (Volta GPU, sm_72): TensorRT engines built on Xavier, ONNX for ONNX Runtime or on-device builds",
            "linux-aarch64",
            ("fp32", "fp16", "int8"),
            "7.2",
            17,
            "5.x",
        ),
    )
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise BadInput(f"unknown target '{name}' (choose from {', '.join(TARGETS)})")
    return TARGETS[name]
