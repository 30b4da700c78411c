"""Evaluation: prompted inference on manifest objects, metrics against ground truth, teacher agreement."""

from medkd.evaluation.report import build_report, summary_table, write_report
from medkd.evaluation.runner import EvalResult, evaluate
from medkd.evaluation.segmenter import Prompts, Segmenter, load_segmenter

__all__ = [
    "EvalResult",
    "Prompts",
    "Segmenter",
    "build_report",
    "evaluate",
    "load_segmenter",
    "summary_table",
    "write_report",
]
