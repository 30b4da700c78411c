"""``medkd report RUN``: provenance, accuracy, latency, the latency-against-DSC plot and mask panels,
assembled into one static HTML page."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medkd import __version__
from medkd.bench.tables import ENTRY_COLUMNS, entry_cells, is_numeric
from medkd.data import load_manifest
from medkd.data.preprocessing import parse_crop
from medkd.errors import BadInput
from medkd.report import html
from medkd.report.context import run_context
from medkd.report.masks import build_panels, model_columns
from medkd.report.plot import latency_dsc_png, plottable
from medkd.report.points import Point, collect_points
from medkd.report.run import RunContents, provenance_rows, resolve_input, scan_run
from medkd.report.volume import volume_figures

def run_data_manifest(contents: RunContents) -> Path | None:
    """The first data manifest named by an artifact's inputs that is found here."""
    for artifact in contents.artifacts:
        for item in artifact.manifest.inputs:
            if item.kind == "data-manifest":
                path = resolve_input(item, contents.root)
                if path is not None and path.is_file():
                    return path
    return None


def provenance_section(contents: RunContents) -> str:
    rows = provenance_rows(contents)
    chain = "".join(
        f"<li><b>{html.text(r['name'])}</b> ({html.text(r['kind'])}, {html.text(r['model'])}) made from: "
        + (", ".join(f"{html.text(i['kind'])} {html.text(i['path'])} [{html.text(i['status'])}]" for i in r["inputs"]) or "nothing recorded")
        + "</li>"
        for r in rows
    )
    table_rows = [
        [
            r["name"],
            r["kind"],
            r["model"],
            r["id"],
            r["created"],
            r["files"],
            "; ".join(f"{i['kind']} {i['sha256'][:12]} ({i['status']})" for i in r["inputs"]) or "-",
        ]
        for r in rows
    ]
    headers = ["artifact", "kind", "model", "id", "created", "files", "inputs (sha256, status)"]
    return f'<ol class="chain">{chain}</ol>' + html.table(headers, table_rows, numeric=(5,), table_id="provenance-table")


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def accuracy_section(points: list[Point]) -> str:
    by_artifact = {p.artifact: p for p in points}
    measured = [p for p in by_artifact.values() if p.accuracy is not None]
    if not measured:
        return html.paragraph("No accuracy measured on these artifacts: run medkd eval --model ARTIFACT --data MANIFEST --out RUN/eval-NAME.json.")
    modalities = sorted({m for p in measured for m in p.accuracy.by_modality})
    headers = ["artifact", "kind", "model", "split", "DSC", "NSD", *(f"DSC {m}" for m in modalities), "source"]
    rows = [
        [
            p.artifact,
            p.kind,
            p.model,
            p.accuracy.split,
            _fmt(p.accuracy.dsc),
            _fmt(p.accuracy.nsd),
            *(_fmt(p.accuracy.by_modality.get(m)) for m in modalities),
            p.accuracy.source,
        ]
        for p in measured
    ]
    missing = sorted(p.artifact for p in by_artifact.values() if p.accuracy is None)
    note = html.paragraph(f"Not measured: {', '.join(missing)}.") if missing else ""
    return html.table(headers, rows, numeric=tuple(range(4, 6 + len(modalities))), table_id="accuracy-table") + note


def latency_section(contents: RunContents) -> str:
    names = {a.manifest.id: a.name for a in contents.artifacts}
    rows = []
    for path, document in contents.bench:
        device = document["device"]
        where = (device.get("gpu") or {}).get("name") or (device.get("cpu") or {}).get("model")
        for entry in document["entries"]:
            name = names.get(entry.get("artifact_id"), entry.get("source"))
            rows.append([name, *entry_cells(entry), f"{entry['warmup']}+{entry['iterations']}", where, path.name])
    if not rows:
        return html.paragraph("No benchmark results in this run: medkd bench ARTIFACT --out RUN/bench-NAME.json (or --bench FILE).")
    headers = ["artifact", *ENTRY_COLUMNS, "warm-up+iters", "device", "file"]
    return html.table(headers, rows, numeric=tuple(i for i, header in enumerate(headers) if is_numeric(header)), table_id="latency-table")


def tradeoff_section(points: list[Point], title: str) -> str:
    shown = plottable(points)
    if not shown:
        return html.paragraph("No artifact has both a latency and a DSC yet, so there is nothing to plot.")
    rows = [[p.artifact, p.backend, p.precision, _fmt(p.latency_ms, 2), p.latency_source, _fmt(p.accuracy.dsc), p.accuracy.split] for p in shown]
    plot = html.image(latency_dsc_png(points, title), "median latency against mean DSC", "Median latency per image (log scale) against mean DSC.")
    return plot + html.table(
        ["artifact", "backend", "precision", "latency ms", "latency from", "DSC", "split"], rows, numeric=(3, 5), table_id="tradeoff-table"
    )


def masks_section(contents: RunContents, data: Path | None, split: str, per_modality: int, crop: str | None) -> str:
    columns = model_columns(contents.artifacts)
    if not columns:
        return html.paragraph("No model artifact (teacher, student, INT8 export) to show masks of.")
    if data is None:
        return html.paragraph("No data manifest found through the artifacts' inputs: pass --data MANIFEST to show masks.")
    panels, used = build_panels(load_manifest(data), columns, split, per_modality, crop)
    described = "; ".join(f"{label}: {spec.describe()}" for label, spec in used.items())
    source = "as each model was trained (its recorded preprocessing)" if crop is None else f"crop overridden to {crop}"
    intro = html.paragraph(f"{split} objects of {data.name}, ground-truth box prompts, {source}. {described}.")
    figures = "".join(html.image(p.png, f"masks for {p.row_id}", f"{p.modality}: " + ", ".join(f"{k} DSC {v:.3f}" for k, v in p.dsc.items())) for p in panels)
    return intro + figures


def volume_section(contents: RunContents, data: Path | None, split: str, crop: str | None) -> str:
    columns = model_columns(contents.artifacts)
    if not columns or data is None:
        return html.paragraph("No model artifact or no data manifest: no volume to show.")
    return volume_figures(load_manifest(data), [(c.label, str(c.artifact.path)) for c in columns], split, crop)


def build_report(
    run: Path, data: Path | None = None, split: str = "test", per_modality: int = 1, crop: str | None = None, bench: Sequence[Path] = ()
) -> tuple[str, dict[str, Any]]:
    """The HTML page for ``run`` and a summary of what it shows (``crop`` overrides each model's own)."""
    parse_crop(crop)
    if data is not None and not data.is_file():
        raise BadInput(f"{data} does not exist")
    contents = scan_run(run, list(bench))
    points = collect_points(contents)
    manifest = data or run_data_manifest(contents)
    context = run_context(run)
    sections = [
        *([("context", "What these figures are", "".join(html.paragraph(line) for line in context))] if context else []),
        ("provenance", "Provenance", provenance_section(contents)),
        ("accuracy", "Accuracy", accuracy_section(points)),
        ("latency", "Latency", latency_section(contents)),
        ("tradeoff", "Latency against DSC", tradeoff_section(points, f"{run.name}: latency against DSC")),
        ("masks", "Masks", masks_section(contents, manifest, split, per_modality, crop)),
        ("volume", "A volume", volume_section(contents, manifest, split, crop)),
    ]
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    counts = f"{len(contents.artifacts)} artifacts, {len(contents.evals)} eval reports, {len(contents.bench)} benchmark results"
    meta = f"Run {run.name}: {counts}. Generated {generated} by medkd {__version__}."
    summary = {
        "artifacts": len(contents.artifacts),
        "evals": len(contents.evals),
        "bench": len(contents.bench),
        "points": len(plottable(points)),
        "data": str(manifest) if manifest else None,
    }
    return html.page(f"medkd report: {run.name}", sections, meta), summary
