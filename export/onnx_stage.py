"""``medkd export onnx``: encoder and decoders (or the U-Net) as ONNX, validated, with a manifest.

SAM-family models give ``encoder.onnx`` (dynamic batch), ``decoder.onnx`` (``SamOnnxModel``
interface, dynamic prompt and point counts) and ``decoder_trt.onnx`` (no shape-tensor input, low-res
masks, ``point_slots`` points per prompt, dynamic prompt count). U-Nets give ``unet.onnx``. The
manifest (written last) records the layout (:mod:`medkd.runtime.layout`: the model's preprocessing spec,
also stamped into every graph's ``metadata_props``), the TensorRT profiles and the measured
agreement with PyTorch; an export that misses the thresholds is refused. Graphs are staged in a held
``OUT/.export-*`` directory (:mod:`medkd.temporaries`); the next export into ``OUT`` removes those
that killed runs left.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from medkd.export.graphs import (
    ImageEncoder,
    LowResDecoder,
    SamInterfaceDecoder,
    UNetGraph,
    set_gelu_approximate,
    traceable,
)
from medkd.runtime.layout import EXPORT_KIND, base_layout, graph_entry, graph_metadata, stamp_metadata
from medkd.export.onnx_graph import GraphIO, check_opset, export_onnx
from medkd.runtime.onnx_runtime import OnnxSegmenter
from medkd.export.source import load_source
from medkd.export.validate import failures, sample_rows, validate_export
from torch import nn

from medkd.artifacts import (
    TEMPORARY_SUFFIX,
    ArtifactInput,
    Manifest,
    hash_files,
    sha256_file,
    write_manifest,
)
from medkd.data import ArrayCache, RowLoader, load_manifest
from medkd.errors import BadInput, MedkdError
from medkd.temporaries import held_directory, remove_stale

PROMPT_AXES = {0: "prompts", 1: "points"}
STAGING_PREFIX = ".export-"


@dataclass
class OnnxOptions:
    """What ``medkd export onnx`` was asked for."""

    opset: int = 17
    gelu_approximate: bool = False
    point_slots: int = 4
    single_mask: bool = False
    max_batch: int = 4
    max_prompts: int = 16
    validate_samples: int = 4
    split: str = "test"
    max_logit_diff: float = 1e-3
    min_dsc: float = 0.99


def _written(path: Path, files: list[str], metadata: dict[str, str]) -> dict[str, Any]:
    """The manifest entry of a graph just written, after stamping its metadata into the file."""
    stamp_metadata(path, metadata)
    return graph_entry(path, files)


def _sam_graphs(sam: nn.Module, size: int, grid: int, out: Path, options: OnnxOptions, metadata: dict[str, str]) -> dict[str, dict[str, Any]]:
    image = torch.zeros(1, 3, size, size)
    embedding = torch.zeros(1, 256, grid, grid)
    coords = torch.tensor([[[size * 0.25, size * 0.25], [size * 0.75, size * 0.75], [0.0, 0.0]]])
    labels = torch.tensor([[2.0, 3.0, -1.0]])
    low_res = 4 * grid
    graphs = {
        "encoder": (
            ImageEncoder(sam),
            (image,),
            GraphIO(("image",), ("image_embeddings",), {"image": {0: "batch"}, "image_embeddings": {0: "batch"}}),
        ),
        "decoder": (
            SamInterfaceDecoder(sam, options.single_mask),
            (embedding, coords, labels, torch.zeros(1, 1, low_res, low_res), torch.zeros(1), torch.tensor([float(size)] * 2)),
            GraphIO(
                ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"),
                ("masks", "iou_predictions", "low_res_masks"),
                {"point_coords": PROMPT_AXES, "point_labels": PROMPT_AXES, "masks": {0: "prompts"}, "iou_predictions": {0: "prompts"}, "low_res_masks": {0: "prompts"}},
            ),
        ),
        "decoder_trt": (
            LowResDecoder(sam),
            (embedding, coords.new_zeros(1, options.point_slots, 2), labels.new_full((1, options.point_slots), -1.0)),
            GraphIO(
                ("image_embeddings", "point_coords", "point_labels"),
                ("low_res_masks", "iou_predictions"),
                {"point_coords": {0: "prompts"}, "point_labels": {0: "prompts"}, "low_res_masks": {0: "prompts"}, "iou_predictions": {0: "prompts"}},
            ),
        ),
    }
    entries = {}
    with traceable(sam):
        for name, (module, args, io) in graphs.items():
            files = export_onnx(module, args, out / f"{name}.onnx", io, options.opset)
            entries[name] = _written(out / files[0], files, metadata)
    return entries


def _unet_graphs(unet: nn.Module, size: int, out: Path, options: OnnxOptions, metadata: dict[str, str]) -> dict[str, dict[str, Any]]:
    io = GraphIO(("image",), ("logits",), {"image": {0: "batch"}, "logits": {0: "batch"}})
    files = export_onnx(UNetGraph(unet), (torch.zeros(1, 4, size, size),), out / "unet.onnx", io, options.opset)
    return {"unet": _written(out / files[0], files, metadata)}


def profiles(family: str, size: int, grid: int | None, options: OnnxOptions) -> dict[str, dict[str, list[list[int]]]]:
    """TensorRT optimization profiles: min / opt / max shape of every dynamic input, per graph."""
    if family == "unet":
        return {"unet": {"image": [[1, 4, size, size], [1, 4, size, size], [options.max_batch, 4, size, size]]}}
    slots = options.point_slots
    return {
        "encoder": {"image": [[1, 3, size, size], [1, 3, size, size], [options.max_batch, 3, size, size]]},
        "decoder_trt": {
            "point_coords": [[1, slots, 2], [1, slots, 2], [options.max_prompts, slots, 2]],
            "point_labels": [[1, slots], [1, slots], [options.max_prompts, slots]],
        },
    }


def export_onnx_artifact(reference: str, out: Path, data: Path, options: OnnxOptions, checkpoint: str | None = None) -> Manifest:
    """Export ``reference``, validate on ``data`` and write the artifact ``out`` (manifest last)."""
    check_opset(options.opset)
    if options.point_slots < 2:
        raise BadInput("--point-slots must be at least 2 (a box takes two)")
    manifest = load_manifest(data)
    rows = sample_rows(manifest, options.validate_samples, options.split)
    if not rows:
        raise BadInput(f"{data} has no objects in split '{options.split}' to validate the export on")
    source = load_source(reference, checkpoint)
    reference_segmenter = source.segmenter
    exported_module = source.module
    if options.gelu_approximate:
        exported_module = load_source(reference, checkpoint).module
        set_gelu_approximate(exported_module)
    family, size, grid = reference_segmenter.family, reference_segmenter.input_size, source.embedding_grid
    base = base_layout(reference_segmenter.name, family, source.kwargs, grid, reference_segmenter.preprocessing, reference, options.point_slots)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out, [f"{STAGING_PREFIX}*", f".*{TEMPORARY_SUFFIX}"])  # what killed exports left; running ones hold theirs
    with held_directory(out, STAGING_PREFIX) as staging:
        if family == "unet":
            graphs = _unet_graphs(exported_module, size, staging, options, graph_metadata(base))
        else:
            graphs = _sam_graphs(exported_module, size, grid, staging, options, graph_metadata(base))
        layout = {
            "format": "onnx",
            **base,
            "graphs": graphs,
            "profiles": profiles(family, size, grid, options),
            "opset": options.opset,
            "gelu_approximate": options.gelu_approximate,
            "single_mask": options.single_mask,
        }
        files = [name for entry in graphs.values() for name in entry["files"]]
        partial = Manifest(kind=EXPORT_KIND, config={"export": layout}, files=hash_files(staging, files))
        write_manifest(staging, partial)
        report = validate_export(
            reference_segmenter,
            OnnxSegmenter(staging),
            rows,
            RowLoader(manifest, ArrayCache(None)),
            str(staging / "decoder_trt.onnx") if family == "sam" else None,
            options.point_slots,
        )
        report.update({"max_logit_diff_allowed": options.max_logit_diff, "min_dsc_allowed": options.min_dsc})
        problems = failures(report, options.max_logit_diff, options.min_dsc)
        if problems:
            raise MedkdError(f"exported graphs disagree with PyTorch on {len(rows)} images: {'; '.join(problems)}")
        for name in files:
            shutil.move(str(staging / name), str(out / name))
    inputs = source.inputs + [ArtifactInput("data-manifest", str(data), sha256_file(data))]
    final = Manifest(
        kind=EXPORT_KIND,
        config={"export": layout, "options": options.__dict__},
        inputs=inputs,
        files=hash_files(out, files),
        metrics={"validation": report},
    )
    return write_manifest(out, final)
