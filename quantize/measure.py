"""What a quantized graph costs in accuracy and gains in speed, measured against the FP32 export.

- output error: ``||int8 - fp32|| / ||fp32||`` of a graph's main output (the encoder's embeddings, the
  decoders' low-resolution mask logits), averaged over feeds;
- DSC / NSD of the whole exported pipeline on manifest objects (``medkd eval``'s own code), and its
  masks' agreement (DSC) with the FP32 export's masks on the same objects;
- ONNX Runtime latency of two graphs side by side: runs alternate between them, so both see the same
  machine load, and the report keeps medians (p50) and p90.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from medkd.runtime.onnx_runtime import OnnxSegmenter, cpu_session
from medkd.quantize.calibration import Feed

from medkd.data.loading import RowLoader
from medkd.data.manifest import ManifestRow
from medkd.evaluation import evaluate
from medkd.evaluation.reference_masks import default_reference_dir

MAIN_OUTPUT = {"encoder": "image_embeddings", "decoder": "low_res_masks", "decoder_trt": "low_res_masks", "unet": "logits"}


def graph_outputs(session: ort.InferenceSession, output: str, feeds: list[Feed]) -> list[np.ndarray]:
    """``output`` of ``session`` on each of ``feeds``."""
    return [session.run([output], feed)[0] for feed in feeds]


def output_error(expected: list[np.ndarray], candidate: ort.InferenceSession, output: str, feeds: list[Feed]) -> float:
    """Mean relative L2 error of ``output`` of ``candidate`` against the reference's ``expected``
    outputs (:func:`graph_outputs` of the FP32 graph) over ``feeds``."""
    errors = []
    for reference, got in zip(expected, graph_outputs(candidate, output, feeds), strict=True):
        errors.append(float(np.linalg.norm(got - reference) / max(float(np.linalg.norm(reference)), 1e-12)))
    return float(np.mean(errors))


def segmentation_scores(
    directory: Path,
    rows: list[ManifestRow],
    loader: RowLoader,
    crop: str | None,
    threads: int | None = None,
    reference: Path | None = None,
    keep_masks: bool = False,
) -> dict[str, Any]:
    """Mean DSC and NSD of an export-layout directory on ``rows`` (box prompts; ``crop`` None: the model's
    own) and each object's DSC (``dsc_by_object``), and with ``reference`` (the FP32 export) the mean
    agreement DSC with its masks, read from the reference-mask cache where there (else computed and
    kept there). ``keep_masks`` keeps this directory's own masks there too (an export with a manifest:
    the FP32 export, whose masks later scorings compare with).

    An overriding ``crop`` is applied without a warning per call: the stage warns once, on resolving it.
    """
    segmenter = OnnxSegmenter(directory, threads)
    teacher = None if reference is None else OnnxSegmenter(reference, threads)
    for model in (segmenter, teacher):
        if model is not None and crop is not None:
            model.preprocessing = replace(model.preprocessing, crop=crop)
    references = default_reference_dir() if teacher is not None or keep_masks else None
    result = evaluate(segmenter, rows, loader, "box", batch_size=1, teacher=teacher, progress=False, reference_dir=references, keep_own=keep_masks)
    overall = result.summary["overall"]
    scores: dict[str, Any] = {metric: overall[metric]["mean"] for metric in ("dsc", "nsd", "agreement_dsc") if metric in overall}
    return {**scores, "dsc_by_object": {record["id"]: record["dsc"] for record in result.records}}


def side_by_side_latency(graphs: dict[str, Path], feed: Feed, threads: int = 2, runs: int = 20, warmup: int = 3) -> dict[str, dict[str, float]]:
    """p50 / p90 milliseconds of each graph on ``feed``, runs interleaved across graphs."""
    return interleaved_latency({label: cpu_session(path, threads) for label, path in graphs.items()}, feed, runs, warmup)


def interleaved_latency(
    sessions: dict[str, ort.InferenceSession], feed: Feed, runs: int = 20, warmup: int = 3, block: int = 1
) -> dict[str, dict[str, float]]:
    """p50 / p90 milliseconds of each session on ``feed``, runs alternating between them ``block`` at a
    time. With ``block`` > 1 each turn starts with one untimed run: sessions with ONNX Runtime's default
    options keep their idle threads spinning for a while after a run, which would slow whichever session
    runs next on a machine with few cores."""
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feed)
    times: dict[str, list[float]] = {label: [] for label in sessions}
    for _ in range(-(-runs // block)):
        for label, session in sessions.items():
            if block > 1:
                session.run(None, feed)
            for _ in range(block):
                start = time.perf_counter()
                session.run(None, feed)
                times[label].append((time.perf_counter() - start) * 1e3)
    return {label: {"p50_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "runs": len(t)} for label, t in times.items()}
