"""The accuracy-against-latency plot (matplotlib, Agg) as PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from medkd.report.points import Point  # noqa: E402

MARKERS = {"torch": "o", "torch-compile": "D", "ort": "s", "ort-int8": "^", "tensorrt": "P", "aoti": "X"}


def figure_png(figure: plt.Figure, dpi: int = 100) -> bytes:
    """A figure as PNG bytes (closed afterwards)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def plottable(points: list[Point]) -> list[Point]:
    """Points with both a latency and a DSC."""
    return [p for p in points if p.latency_ms is not None and p.accuracy is not None and p.accuracy.dsc is not None]


def latency_dsc_png(points: list[Point], title: str) -> bytes:
    """Median latency (log scale) against mean DSC, one marker per backend, each point labelled."""
    shown = plottable(points)
    if not shown:
        raise ValueError("no point has both a latency and a DSC")
    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    for backend in sorted({p.backend for p in shown}):
        group = [p for p in shown if p.backend == backend]
        axes.scatter([p.latency_ms for p in group], [p.accuracy.dsc for p in group], marker=MARKERS.get(backend, "o"), s=60, label=backend)
        for p in group:
            axes.annotate(f"{p.artifact} ({p.precision})", (p.latency_ms, p.accuracy.dsc), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.xaxis.set_minor_formatter(ScalarFormatter())
    axes.set_xlabel("median latency per image, ms (log scale)")
    axes.set_ylabel("mean DSC")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(title="backend", fontsize=8)
    return figure_png(figure)
