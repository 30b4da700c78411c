"""The evaluation report: a metrics JSON (config, provenance, summary, per-object records) and a table."""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any

from rich.table import Table

from medkd.artifacts import atomic_write_json, software_versions
from medkd.evaluation.runner import EvalResult
from medkd.evaluation.volumes import PROMPT as VOLUME_PROMPT
from medkd.evaluation.volumes import VolumeEval
from medkd.metrics import NSD_MIN_DSC, NSD_TOLERANCE_MM

REPORT_KIND = "medkd.eval"
_COLUMNS = (("dsc", "DSC"), ("nsd", "NSD"), ("iou", "IoU"), ("hd95", "HD95"))
_AGREEMENT_COLUMNS = (("agreement_dsc", "agree DSC"), ("agreement_iou", "agree IoU"))


def build_report(result: EvalResult, config: dict[str, Any], volumes: VolumeEval | None = None) -> dict[str, Any]:
    """The JSON document written by ``medkd eval``; with ``volumes``, the per-volume scores under ``volumes``."""
    report = {
        "kind": REPORT_KIND,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "conventions": {
            "nsd_tolerance_mm": NSD_TOLERANCE_MM,
            "nsd_only_where_dsc_above": NSD_MIN_DSC,
            "no_spacing": "distances in pixels where the image gives no spacing (spacing_mm false)",
            "hd95": "mm (pixels without spacing); null where the prediction is empty",
        },
        "software": software_versions(),
        "summary": result.summary,
        "objects": result.records,
    }
    if volumes is not None:
        report["volumes"] = {"prompt": VOLUME_PROMPT, "summary": volumes.summary, "objects": volumes.records}
    return report


def write_report(path: str | os.PathLike, report: dict[str, Any]) -> None:
    atomic_write_json(path, report)


def _cell(stats: dict[str, Any] | None) -> str:
    if not stats or stats["mean"] is None:
        return "-"
    return f"{stats['mean']:.4f}"


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """Mean of each metric overall, per dataset and per modality, with object counts."""
    overall = summary["overall"]
    columns = [c for c in _COLUMNS + _AGREEMENT_COLUMNS if c[0] in overall]
    table = Table(title=title)
    for header in ("group", "objects", *(label for _, label in columns)):
        table.add_column(header, justify="left" if header == "group" else "right")
    groups = [(f"{key.removeprefix('by_')}: {value}", stats) for key in summary if key.startswith("by_") for value, stats in summary[key].items()]
    for name, stats in [*groups, ("overall", overall)]:
        table.add_row(name, str(stats[columns[0][0]]["n"]), *(_cell(stats.get(key)) for key, _ in columns))
    return table
