"""``MODEL_CARD.md``: intended use, data, metrics and limitations, written from the bundle manifest."""

from __future__ import annotations

import re
from typing import Any

from medkd.bundle.schema import AccuracyEntry, BundleManifest, TensorSpec
from medkd.data.preprocessing import Preprocessing

LATENCY_QUANTILES = ("p50", "p90", "p99")
CARD_METRICS = (("dsc", "DSC"), ("nsd", "NSD"), ("iou", "IoU"), ("hd95", "HD95"), ("agreement_dsc", "agree DSC"), ("dsc_drop", "DSC drop from FP32"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _tensors(specs: list[TensorSpec]) -> str:
    return ", ".join(f"`{s.name}` {s.dtype} [{', '.join(map(str, s.shape))}]" for s in specs)


def _accuracy(entry: AccuracyEntry) -> list[str]:
    columns = [(key, label) for key, label in CARD_METRICS if key in entry.overall]
    title = f"**{entry.model}** ({entry.source}; split {entry.split or '-'}, prompt {entry.prompt or '-'}, crop {entry.crop or '-'})"
    rows = [[dataset, stats.get("n"), *(stats.get(key) for key, _ in columns)] for dataset, stats in entry.by_dataset.items()]
    rows.append(["overall", entry.overall.get("n"), *(entry.overall.get(key) for key, _ in columns)])
    return [title, "", *_table(["dataset", "objects", *(label for _, label in columns)], rows), ""]


def _preprocessing(spec: dict[str, Any]) -> list[str]:
    """The preprocessing every variant runs with and its accuracy was measured with, in words."""
    summary = f"Preprocessing (recorded at training, used for the metrics below): {Preprocessing.from_dict(spec).describe()}."
    rules = [f"- {key}: {value}" for key, value in spec.get("rules", {}).items()]
    return [summary, "", *rules]


def _device_name(device: Any) -> str:
    """The GPU's name, else the CPU's model, of a benchmark's ``device`` record."""
    for key in ("gpu", "cpu"):
        value = device.get(key) if isinstance(device, dict) else None
        if isinstance(value, dict):
            value = value.get("name") or value.get("model")
        if value:
            return str(value)
    return "not recorded"


def _side_by_side(latency: dict[str, Any]) -> list[str]:
    """``medkd quantize``'s interleaved timing: p50 per precision and the speed-up, per graph."""
    rows = [
        [graph, "; ".join(f"{label} {_cell(t['p50_ms'])} ms" for label, t in timing.items() if isinstance(t, dict)), timing["speedup_p50"]]
        for graph, timing in latency.items()
        if isinstance(timing, dict) and "speedup_p50" in timing
    ]
    return _table(["graph", "p50", "speed-up"], rows) if rows else []


def _latency(entry: dict[str, Any]) -> list[str]:
    """A benchmark document's entries (p50 / p90 / p99 in ms), or a manifest's side-by-side timing, as a table."""
    rows = [
        [e.get("model"), e.get("backend"), e.get("graph"), e.get("precision"), e.get("batch"), e.get("threads"), *(e.get("latency_ms", {}).get(q) for q in LATENCY_QUANTILES)]
        for e in entry.get("entries", [])
        if isinstance(e, dict)
    ]
    recorded = entry.get("latency")
    device = entry.get("device") or (recorded.get("device") if isinstance(recorded, dict) else None)
    title = f"**latency** ({entry['source']}, device: {device if isinstance(device, str) else _device_name(device)})"
    if rows:
        return [title, "", *_table(["model", "backend", "graph", "precision", "batch", "threads", *(f"{q} ms" for q in LATENCY_QUANTILES)], rows), ""]
    table = _side_by_side(recorded) if isinstance(recorded, dict) else []
    return [title, "", *(table or [f"Recorded as {entry.get('kind', 'manifest metrics')}: see manifest.json."]), ""]


def _limitations(manifest: BundleManifest) -> list[str]:
    datasets = ", ".join(d.dataset for d in manifest.data) or "no recorded dataset"
    items = [
        f"Measured only on the datasets above ({datasets}); other scanners, sites, anatomies and modalities are untested.",
        "Segments one object per prompt on 2D images; volumes are segmented slice by slice.",
        "Not a medical device: outputs need review by a qualified person before any clinical use.",
    ]
    if not manifest.accuracy:
        items.append("No accuracy was measured for this run: run `medkd eval` on it before relying on the model.")
    evaluated = {e.artifact_id for e in manifest.accuracy}
    unevaluated = [v.name for v in manifest.variants if v.format == "onnx" and v.precision != "fp32" and v.artifact_id not in evaluated]
    if unevaluated:
        items.append(f"Variants without their own accuracy report ({', '.join(unevaluated)}) may differ from the FP32 figures.")
    if any(v.format == "tensorrt" for v in manifest.variants):
        items.append("TensorRT engines run only with the TensorRT version and GPU compute capability they were built for (`medkd verify` checks).")
    return [f"- {item}" for item in items]


def render_model_card(manifest: BundleManifest) -> str:
    """The model card of ``manifest`` (its ``files`` need not be complete)."""
    model, target = manifest.model, manifest.target
    modalities = sorted({d.modality for d in manifest.data if d.modality})
    lines = [
        f"# {model.id} {model.version}",
        "",
        (
            f"`{model.architecture}` ({model.family}, {model.input_size} px input), packed by medkd {manifest.medkd} on {manifest.created} "
            f"for **{target.name}**: {target.description}."
        ),
        "",
        "## Intended use",
        "",
        (
            "Promptable segmentation of one structure per box or point prompt in 2D medical images "
            f"({', '.join(modalities) or 'modalities not recorded'}), for research and for integration into devices by their makers."
        ),
        "",
        "## Variants",
        "",
        *_table(
            ["variant", "format", "precision", "opset", "graphs / engines"],
            [[v.name, v.format, v.precision, v.opset, ", ".join(g.file for g in v.graphs)] for v in manifest.variants],
        ),
        "",
    ]
    for variant in manifest.variants:
        for engine in variant.engines:
            lines.append(
                f"- `{variant.name}/{engine.file}`: TensorRT {engine.tensorrt}, CUDA {engine.cuda or '-'}, compute capability "
                f"{engine.compute_capability or '-'} ({engine.gpu or 'GPU not recorded'}), JetPack {engine.jetpack or 'not recorded'}"
            )
    graphs = manifest.variants[0].graphs
    lines += ["", "## Inputs and outputs", ""]
    lines += [f"- `{g.name}`: in {_tensors(g.inputs)}; out {_tensors(g.outputs)}" for g in graphs]
    lines += ["", *_preprocessing(manifest.preprocessing)]
    lines += ["", f"Prompts: {manifest.prompts.get('format')}", ""]
    lines += ["## Training and evaluation data", ""]
    for dataset in manifest.data:
        lines += [f"### {dataset.dataset} ({dataset.modality or '-'}; licences: {', '.join(dataset.licences) or 'not recorded'})", ""]
        lines += [re.sub(r"^#", "####", dataset.attribution or "No attribution recorded.", flags=re.MULTILINE), ""]
    if not manifest.data:
        lines += ["No data manifest was found in the provenance chain.", ""]
    lines += ["## Metrics", ""]
    for entry in manifest.accuracy:
        lines += _accuracy(entry)
    for variant in manifest.variants:
        validation = variant.validation
        if validation:
            lines.append(
                f"- `{variant.name}` against PyTorch on {validation.get('samples')} images: max |logit diff| "
                f"{_cell(validation.get('max_abs_logit_diff'))}, min mask DSC {_cell(validation.get('min_mask_dsc'))}"
            )
    lines.append("")
    for entry in manifest.latency:
        lines += _latency(entry)
    if not manifest.accuracy and not manifest.latency:
        lines.append("No measurements recorded.")
    lines += ["", "## Limitations", "", *_limitations(manifest), "", "## Provenance", ""]
    lines += _table(["kind", "id", "name", "created", "found"], [[n.kind, n.id, n.name, n.created, n.found] for n in manifest.provenance])
    lines += ["", "## Licences", ""]
    lines += [f"- {what}: {licence or 'not stated'}" for what, licence in manifest.licences.items()]
    lines += [
        "",
        "## Checking this bundle",
        "",
        (
            "`medkd verify BUNDLE.medkd --trust-store VENDOR.pub` checks every file's size and SHA-256, the signature "
            f"({manifest.signer or 'this bundle is not signed'}) against the trusted key and whether this device can run each variant."
        ),
    ]
    return "\n".join(lines) + "\n"
