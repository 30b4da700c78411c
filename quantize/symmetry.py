"""The rule every quantized graph obeys: symmetric int8 Q/DQ (zero point present, int8, all 0; scales > 0).

TensorRT builds INT8 engines only from such graphs; the rule is checked with ``medkd export check``'s
Q/DQ lint on every graph ``medkd quantize`` reads or writes.
"""

from __future__ import annotations

from pathlib import Path

from medkd.export.check import check_onnx

from medkd.errors import BadInput

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def qdq_problems(path: str | Path) -> list[str]:
    """Every Q/DQ node of the ONNX file at ``path`` that breaks the symmetric int8 rule, as a phrase."""
    return [finding.message for finding in check_onnx(path) if finding.rule == "qdq"]


def require_symmetric(path: str | Path) -> None:
    """Refuse (``BadInput``) an ONNX file with any asymmetric or non-int8 Q/DQ node."""
    problems = qdq_problems(path)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInput(f"{Path(path).name} breaks the symmetric int8 Q/DQ rule: {problems[0]}{more}")
