"""``medkd report``: one static HTML page per run: provenance chain, accuracy and latency tables, the
latency-against-DSC plot and teacher / student / INT8 masks next to the ground truth.

    from medkd.report import build_report
    page, summary = build_report(Path("runs/stand-in"))
"""

from medkd.report.build import build_report
from medkd.report.points import Accuracy, Point, collect_points
from medkd.report.run import Artifact, RunContents, scan_run

__all__ = ["Accuracy", "Artifact", "Point", "RunContents", "build_report", "collect_points", "scan_run"]
