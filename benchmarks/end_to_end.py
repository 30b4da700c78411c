"""End-to-end 2D segmentation per image, as a deployment runs it: read the file, preprocess, encoder,
decoder, postprocess, for each deployable student, side by side in one process.

    python benchmarks/end_to_end.py                                  # runs/stand-in/litemedsam if it exists, else random tinyvit-256
    python benchmarks/end_to_end.py --model runs/stand-in/litemedsam --model runs/stand-in/export

Each image is a real test image of ``../shared/data`` (CT slices, fetal-head ultrasound, nuclei; 2D
files) with its ground-truth box as the prompt. Per image: ``read_image`` (decode), MedSAM intensity
normalisation to RGB plus SAM's geometry into the model input (``medkd.data``), the model (PyTorch
``Segmenter``, or ONNX Runtime on an export: encoder and decoder timed apart), and the mask mapped
back to original pixels. The first image's mask is checked against ``medkd segment``'s own function.
A model artifact or zoo name is also exported to ONNX once (``--no-onnx`` to skip) and run by ONNX
Runtime; threads default to 2. Writes the results schema (graph ``end-to-end``, per-stage quantiles
in ``stages_ms``) and prints a markdown table; the target is a median of at most 100 ms per image
for the 256-px student at 2 threads.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import MANIFEST_NAME, read_manifest  # noqa: E402
from medkd.bench import BenchOptions, device_info, latency_summary, new_document, write_document  # noqa: E402
from medkd.bench.run import measure_entry, resolve_threads  # noqa: E402
from medkd.bench.subject import Subject, artifact_id  # noqa: E402
from medkd.bench.suite import DEFAULT_EXPORTS, ensure_export, results_path, shared_data, validation_manifest  # noqa: E402
from medkd.bench.tables import markdown_table, ms  # noqa: E402
from medkd.bench.timing import Workload  # noqa: E402
from medkd.data import build_manifest, load_manifest, normalize_intensity, read_image, save_manifest, to_rgb  # noqa: E402
from medkd.data.manifest import ManifestRow  # noqa: E402
from medkd.runtime import Prompts, Segmenter, load_segmenter  # noqa: E402
from medkd.zoo import WEIGHTS_FILE  # noqa: E402

DISTILLED = Path("runs") / "stand-in" / "litemedsam"
FALLBACK = "tinyvit-256"
DATASETS_2D = ("ct-organs", "fetal-head-us", "nuclei")
STAGES = ("read", "preprocess", "encoder", "decoder", "postprocess")
TARGET_MS, TARGET_SIZE = 100.0, 256
BACKENDS = {"Segmenter": "torch", "OnnxSegmenter": "ort", "AotiSegmenter": "aoti", "TensorRTSegmenter": "tensorrt"}


class Pipeline:
    """Segments the next image on every call and records how long each stage took."""

    def __init__(self, segmenter: Any, images: list[tuple[ManifestRow, Path]]) -> None:
        self.segmenter, self.images = segmenter, images
        self.calls = 0
        self.stages: list[dict[str, float]] = []
        self.encoder_seconds = 0.0
        self._time_encoder()

    def _time_encoder(self) -> None:
        """Accumulate the encoder's time: forward hooks on a PyTorch encoder, a wrapper around ``encode``."""
        if isinstance(self.segmenter, Segmenter):
            if self.segmenter.family == "unet":
                return
            encoder = self.segmenter.module.image_encoder
            encoder.register_forward_pre_hook(lambda *_: setattr(self, "_encoder_start", self._now()))
            encoder.register_forward_hook(lambda *_: self._add_encoder(self._now() - self._encoder_start))
        elif self.segmenter.family != "unet":
            encode = self.segmenter.encode

            def timed(images: np.ndarray) -> np.ndarray:
                started = time.perf_counter()
                result = encode(images)
                self._add_encoder(time.perf_counter() - started)
                return result

            self.segmenter.encode = timed

    def _now(self) -> float:
        """The time after the device has finished its queued work (CUDA runs asynchronously)."""
        if self.segmenter.device.type == "cuda":
            torch.cuda.synchronize(self.segmenter.device)
        return time.perf_counter()

    def _add_encoder(self, seconds: float) -> None:
        self.encoder_seconds += seconds

    def segment(self, row: ManifestRow, path: Path) -> np.ndarray:
        """The binary mask of ``row``'s object (image file ``path``) in original pixels, timing each stage."""
        clock = time.perf_counter()
        decoded = read_image(path)
        read = time.perf_counter()
        rgb = to_rgb(normalize_intensity(decoded.array, row.modality))
        geometry = self.segmenter.preprocessing.plan(rgb.shape[:2], np.asarray(row.box))  # the model's own, crop included
        model_input = geometry.image_to_model(rgb)[None]
        prompts = [Prompts(boxes=geometry.boxes_to_model(np.array([row.box])))]
        preprocessed = time.perf_counter()
        self.encoder_seconds = 0.0
        logits = self.segmenter(model_input, prompts)[0]
        modelled = self._now()
        mask = (geometry.mask_to_original(logits[0].float().cpu()) > 0).numpy()
        done = time.perf_counter()
        model_seconds = modelled - preprocessed
        self.stages.append(
            {
                "read": read - clock,
                "preprocess": preprocessed - read,
                "encoder": self.encoder_seconds if self.segmenter.family != "unet" else model_seconds,
                "decoder": model_seconds - self.encoder_seconds if self.segmenter.family != "unet" else 0.0,
                "postprocess": done - modelled,
            }
        )
        return mask

    def __call__(self) -> np.ndarray:
        row, path = self.images[self.calls % len(self.images)]
        self.calls += 1
        return self.segment(row, path)


def image_rows(manifest_path: Path | None, datasets: tuple[str, ...], per_dataset: int, cache: Path) -> list[tuple[ManifestRow, Path]]:
    """The first object of up to ``per_dataset`` test images of each 2D dataset, with the image's path."""
    if manifest_path is not None:
        manifests = [load_manifest(manifest_path)]
    else:
        manifests = []
        for name in datasets:
            target = cache / f"{name}.jsonl"
            if not target.is_file() and (shared_data() / name).is_dir():
                save_manifest(build_manifest(shared_data() / name, progress=False), target)
            if target.is_file():
                manifests.append(load_manifest(target))
    images, seen, taken = [], set(), defaultdict(int)
    for manifest in manifests:
        for row in manifest.select("test", [name for name in datasets if name in manifest.datasets]):
            if row.slice is None and row.image_key not in seen and taken[row.dataset] < per_dataset:
                seen.add(row.image_key)
                taken[row.dataset] += 1
                images.append((row, manifest.resolve(row.image)))
    if not images:
        raise SystemExit(f"error: no 2D test images of {', '.join(datasets)} (looked in {manifest_path or shared_data()}); pass --data MANIFEST")
    return images


def _is_torch_model(source: str) -> bool:
    """A zoo name or a model artifact (weights), which an ONNX export can be made of."""
    path = Path(source)
    return not path.exists() or (path.is_dir() and (path / MANIFEST_NAME).is_file() and WEIGHTS_FILE in read_manifest(path).files)


def _is_export(source: str) -> bool:
    path = Path(source)
    return path.is_dir() and (path / MANIFEST_NAME).is_file() and read_manifest(path).kind == "export"


def open_model(source: str, threads: int, device: str) -> tuple[Any, str, str]:
    """A segmenter for ``source`` with its backend and precision; ONNX Runtime gets ``threads``."""
    path = Path(source)
    if _is_export(source):
        from medkd.runtime.cpu_lowering import has_qdq
        from medkd.runtime.onnx_runtime import OnnxSegmenter

        segmenter = OnnxSegmenter(path, threads)
        graphs = segmenter.layout["graphs"]
        int8 = any(has_qdq(path / graphs[name]["file"]) for name in segmenter.sessions)
        return segmenter, "ort", "int8" if int8 else "fp32"
    segmenter = load_segmenter(source, device=device)
    backend = BACKENDS.get(type(segmenter).__name__, type(segmenter).__name__)
    precision = read_manifest(path).config.get("precision", "fp32") if backend == "tensorrt" and path.is_dir() else "fp32"
    return segmenter, backend, precision


def check_against_segment(segmenter: Any, row: ManifestRow, path: Path, mask: np.ndarray) -> bool:
    """Whether ``medkd segment``'s functions give the same mask for ``row``."""
    from medkd.runtime.segment import load_slice, segment_image

    rgb = load_slice(path, row.modality, None)
    return bool(np.array_equal(segment_image(segmenter, rgb, np.array(row.box, float), None, None), mask))


def bench_pipeline(source: str, images: list[tuple[ManifestRow, Path]], options: BenchOptions, threads: int, device: str) -> dict[str, Any]:
    """One results entry: ``source`` segmenting ``images`` end to end, with per-stage quantiles."""
    segmenter, backend, precision = open_model(source, threads, device)
    pipeline = Pipeline(segmenter, images)
    matches = check_against_segment(segmenter, *images[0], pipeline.segment(*images[0]))
    pipeline.stages.clear()
    size = segmenter.input_size
    notes = [f"{len(images)} real test images, ground-truth box prompts", "random weights" if Path(source).name == source else f"weights of {source}"]
    subject = Subject(
        segmenter.name, source, backend, precision, str(segmenter.device), [], artifact_id(Path(source)) if Path(source).exists() else None, notes
    )
    workload = Workload("end-to-end", pipeline, {"image": [1, 3, size, size]}, 1, details={"images": len(images), "matches_medkd_segment": matches})
    entry = measure_entry(subject, workload, options, threads)
    timed = pipeline.stages[options.warmup :]
    entry["stages_ms"] = {stage: latency_summary([s[stage] for s in timed]) for stage in STAGES}
    entry["details"]["datasets"] = {name: sum(row.dataset == name for row, _ in images) for name in sorted({row.dataset for row, _ in images})}
    return entry


def table(entries: list[dict[str, Any]]) -> str:
    headers = [
        "model",
        "backend",
        "precision",
        "input",
        "threads",
        "images",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        *(f"{s} p50" for s in STAGES),
        "same mask as medkd segment",
    ]
    rows = [
        [
            e["model"],
            e["backend"],
            e["precision"],
            str(e["inputs"]["image"][-1]),
            str(e["threads"]),
            str(e["iterations"]),
            *(ms(e["latency_ms"][q]) for q in ("p50", "p90", "p99")),
            *(ms(e["stages_ms"][s]["p50"]) for s in STAGES),
            "yes" if e["details"]["matches_medkd_segment"] else "NO",
        ]
        for e in entries
    ]
    return markdown_table(headers, rows)


def default_models(no_onnx: bool) -> list[str]:
    student = str(DISTILLED) if (DISTILLED / MANIFEST_NAME).is_file() else FALLBACK
    return [student] if no_onnx else [student, f"onnx:{student}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="Student artifact, export directory, .pt2, .plan or zoo name (repeatable).")
    parser.add_argument("--no-onnx", action="store_true", help="Do not add the ONNX Runtime export of model artifacts and zoo names.")
    parser.add_argument("--data", type=Path, help="Data manifest (default: an index of ../shared/data, made once).")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS_2D))
    parser.add_argument("--images", type=int, default=20, help="Test images per dataset.")
    parser.add_argument("--passes", type=int, default=1, help="Timed passes over the images.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed images first.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="PyTorch models: cpu, cuda or auto (exports run where they were built for).")
    parser.add_argument("--exports", type=Path, default=DEFAULT_EXPORTS)
    parser.add_argument("--out", type=Path, help="Results JSON (default: benchmarks/results/end_to_end-DATE-DEVICE.json).")
    args = parser.parse_args()

    threads = resolve_threads(args.threads)
    images = image_rows(args.data, tuple(args.datasets), args.images, args.exports)
    options = BenchOptions(warmup=args.warmup, iterations=len(images) * args.passes, threads=threads)
    device = device_info()
    out = args.out or results_path(ROOT / "benchmarks" / "results", "end_to_end", device)
    sources = list(args.model) if args.model else default_models(args.no_onnx)
    if args.model and not args.no_onnx:
        sources += [f"onnx:{m}" for m in args.model if _is_torch_model(m)]
    entries: list[dict[str, Any]] = []
    for source in sources:
        if source.startswith("onnx:"):
            source = str(ensure_export(source.removeprefix("onnx:"), args.exports, validation_manifest(args.exports, None)))
        entries.append(bench_pipeline(source, images, options, threads, args.device))
        write_document(out, new_document(entries, device, "end_to_end"))
    print(table(entries))
    for entry in entries:
        if entry["inputs"]["image"][-1] == TARGET_SIZE:
            verdict = "met" if entry["latency_ms"]["p50"] <= TARGET_MS else "missed"
            median = entry["latency_ms"]["p50"]
            print(f"target: {entry['model']} {entry['backend']} median {median:.1f} ms per image at {threads} threads (at most {TARGET_MS:.0f}: {verdict})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
