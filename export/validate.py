"""Agreement of exported graphs with the PyTorch model on real images from a data manifest.

For each sampled object (ground-truth box, and the object's centre point) the torch ``Segmenter`` and
the exported one see the same model input and prompts, made by the reference's own preprocessing (its
crop window around the box for a model trained with ``crop: box``); recorded are the largest absolute difference
of their low-resolution mask logits and the DSC of their masks in original pixels. For SAM models the
fixed-point-count decoder (``decoder_trt``) is compared with its torch module on the same padded
prompts, and for ONNX the ``SamOnnxModel`` decoder's full-size ``masks`` output (of the crop window) with eval's mask, and the encoder's
embeddings directly (one encoder pass per image and runtime, shared by the prompts).
"""

from __future__ import annotations

from collections import defaultdict
from itertools import chain, zip_longest
from typing import Any

import numpy as np
import torch
from medkd.export.graphs import LowResDecoder
from medkd.runtime.prompts import pad_points, prompt_points, select_masks
from medkd.runtime.exported import ExportedSegmenter
from medkd.runtime.onnx_runtime import OnnxSegmenter, cpu_session

from medkd.data.geometry import Geometry
from medkd.data.loading import RowLoader
from medkd.data.manifest import DataManifest, ManifestRow
from medkd.data.prompts import centre_point
from medkd.runtime.prompts import Prompts
from medkd.runtime.segmenter import Segmenter
from medkd.metrics import overlap

MAX_LOGIT_DIFF = 1e-3
MIN_DSC = 0.99


def sample_rows(manifest: DataManifest, count: int, split: str | None = "test") -> list[ManifestRow]:
    """``count`` objects taken in turn from each dataset (manifest order), one per image."""
    by_dataset: dict[str, list[ManifestRow]] = defaultdict(list)
    seen = set()
    for row in manifest.select(split):
        if row.image_key not in seen:
            seen.add(row.image_key)
            by_dataset[row.dataset].append(row)
    interleaved = (r for r in chain.from_iterable(zip_longest(*by_dataset.values())) if r is not None)
    return [row for _, row in zip(range(count), interleaved)]


def _prompts(row: ManifestRow, geometry: Geometry, mask: np.ndarray, family: str) -> list[Prompts]:
    box = Prompts(boxes=geometry.boxes_to_model(np.array([row.box])))
    if family == "unet":
        return [box]
    point = geometry.points_to_model(centre_point(mask))[None]
    return [box, Prompts(point_coords=point, point_labels=np.ones((1, 1), np.int64))]


def _interface_size(geometry: Geometry) -> tuple[int, int]:
    """The ``orig_im_size`` the ``SamOnnxModel`` decoder gets: the crop window (the whole image without
    a crop) for the longest-side resize, which it undoes itself; the model frame for a stretch."""
    return (geometry.input_size, geometry.input_size) if geometry.resize == "stretch" else geometry.region_size


def _interface_mask(geometry: Geometry, logits: torch.Tensor) -> torch.Tensor:
    """The ``SamOnnxModel`` decoder's full-size logits as a mask in original pixels."""
    if geometry.resize == "stretch":
        return geometry.mask_to_original(logits) > 0
    y0, x0, y1, x1 = geometry.region
    mask = torch.zeros((*logits.shape[:-2], *geometry.original_size), dtype=torch.bool)
    mask[..., y0:y1, x0:x1] = logits > 0
    return mask


def _dsc(a: torch.Tensor, b: torch.Tensor) -> float:
    return overlap(a.numpy(), b.numpy())[0]


def validate_export(
    reference: Segmenter,
    exported: ExportedSegmenter,
    rows: list[ManifestRow],
    loader: RowLoader,
    decoder_trt: str | None = None,
    point_slots: int = 0,
) -> dict[str, Any]:
    """Measured agreement (per check: max abs logit difference, min / mean DSC) over ``rows``."""
    logit_diffs, logit_scales, dscs, embed_diffs, trt_diffs, interface_dscs = [], [], [], [], [], []
    trt_session = cpu_session(decoder_trt) if decoder_trt else None
    trt_module = LowResDecoder(reference.module) if decoder_trt else None
    for row in rows:
        image = loader.image(row)
        geometry = reference.preprocessing.plan(image.shape[:2], np.asarray(row.box))
        model_input = geometry.image_to_model(image)[None]
        prompt_list = _prompts(row, geometry, loader.mask(row), reference.family)
        onnx_sam = reference.family == "sam" and isinstance(exported, OnnxSegmenter)
        if onnx_sam:  # one encoder pass per image and runtime, shared by the prompts
            embedding = exported.encode(model_input.numpy())
            with torch.inference_mode():
                torch_embedding = reference.module.image_encoder(model_input.to(reference.device))
                theirs_list = [reference._sam(torch_embedding, p)[0].float().cpu() for p in prompt_list]
            embed_diffs.append(float(np.abs(embedding - torch_embedding.float().cpu().numpy()).max()))
            ours_list = [torch.from_numpy(select_masks(*exported.decode(embedding, *prompt_points(p)), p)) for p in prompt_list]
        else:
            ours_list = [exported(model_input, [p])[0] for p in prompt_list]
            theirs_list = [reference(model_input, [p])[0].float().cpu() for p in prompt_list]
        for prompts, ours, theirs in zip(prompt_list, ours_list, theirs_list):
            logit_diffs.append(float((ours - theirs).abs().max()))
            logit_scales.append(float(theirs.abs().max()))
            truth_mask = geometry.mask_to_original(theirs) > 0
            dscs.append(_dsc(geometry.mask_to_original(ours) > 0, truth_mask))
            if not onnx_sam:
                continue
            coords, labels = prompt_points(prompts)
            full = exported.sessions["decoder"].run(
                ["masks", "iou_predictions"],
                {
                    "image_embeddings": embedding,
                    "point_coords": coords,
                    "point_labels": labels,
                    "mask_input": np.zeros((1, 1, 4 * embedding.shape[-1], 4 * embedding.shape[-1]), np.float32),
                    "has_mask_input": np.zeros(1, np.float32),
                    "orig_im_size": np.array(_interface_size(geometry), np.float32),
                },
            )
            interface_dscs.append(_dsc(_interface_mask(geometry, torch.from_numpy(select_masks(*full, prompts))), truth_mask))
            if trt_session is not None:
                coords, labels = pad_points(coords, labels, point_slots)
                onnx_out = trt_session.run(None, {"image_embeddings": embedding, "point_coords": coords, "point_labels": labels})
                with torch.inference_mode():
                    torch_out = trt_module(torch.from_numpy(embedding), torch.from_numpy(coords), torch.from_numpy(labels))
                trt_diffs.append(max(float(np.abs(a - b.numpy()).max()) for a, b in zip(onnx_out, torch_out)))
    report: dict[str, Any] = {
        "samples": len(rows),
        "objects": [row.id for row in rows],
        "prompts": len(dscs),
        "max_abs_logit_diff": max(logit_diffs),
        "max_abs_logit": max(logit_scales),
        "min_mask_dsc": min(dscs),
        "mean_mask_dsc": float(np.mean(dscs)),
    }
    if embed_diffs:
        report["encoder_max_abs_diff"] = max(embed_diffs)
        report["interface_masks_min_dsc"] = min(interface_dscs)
    if trt_diffs:
        report["decoder_trt_max_abs_diff"] = max(trt_diffs)
    return report


def failures(report: dict[str, Any], max_logit_diff: float, min_dsc: float) -> list[str]:
    """The thresholds ``report`` misses, as readable phrases. The mask logits' tolerance grows with
    their largest magnitude beyond 1 (float32 sums differ by a relative amount between runtimes: a
    trained U-Net's logits reach the hundreds); the low-res decoder's stays absolute."""
    problems = []
    scale = max(1.0, report.get("max_abs_logit", 1.0))
    if report.get("max_abs_logit_diff", 0.0) > max_logit_diff * scale:
        problems.append(f"max_abs_logit_diff {report['max_abs_logit_diff']:.3g} > {max_logit_diff:g} x largest logit {scale:.3g}")
    if report.get("decoder_trt_max_abs_diff", 0.0) > max_logit_diff:
        problems.append(f"decoder_trt_max_abs_diff {report['decoder_trt_max_abs_diff']:.3g} > {max_logit_diff:g}")
    for key in ("min_mask_dsc", "interface_masks_min_dsc"):
        if report.get(key, 1.0) < min_dsc:
            problems.append(f"{key} {report[key]:.4f} < {min_dsc:g}")
    return problems
