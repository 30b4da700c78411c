"""Evaluation: prompted inference on manifest objects, metrics against ground truth, teacher agreement."""

from medkd.evaluation.report import build_report, summary_table, write_report
from medkd.evaluation.runner import EvalResult, evaluate

__all__ = [
    "EvalResult",
    "build_report",
    "evaluate",
    "summary_table",
    "write_report",
]
