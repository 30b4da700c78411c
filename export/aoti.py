"""``medkd export aoti``: ``torch.export`` + AOTInductor, a deployable ``.pt2`` package without ONNX.

One package holds the models ``encoder`` and ``decoder`` (the low-resolution decoder of
``decoder_trt.onnx``, with dynamic prompt and point counts), or ``unet``; each carries the export
layout as AOTInductor metadata (``medkd_layout``), so the package alone is enough to run it.
Compiled for the CPU, or for CUDA where a GPU is present (``device``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from medkd.export.graphs import ImageEncoder, LowResDecoder, UNetGraph, traceable
from medkd.runtime.aoti import LAYOUT_KEY, PACKAGE_FILE, AotiSegmenter
from medkd.runtime.layout import base_layout
from medkd.export.source import load_source
from medkd.export.validate import (
    MAX_LOGIT_DIFF,
    MIN_DSC,
    failures,
    sample_rows,
    validate_export,
)
from torch import nn
from torch._inductor.package import package_aoti

from medkd.artifacts import (
    ArtifactInput,
    Manifest,
    atomic_path,
    hash_files,
    sha256_file,
    write_manifest,
)
from medkd.data import ArrayCache, RowLoader, load_manifest
from medkd.errors import BadInput, MedkdError



def _graphs(family: str, module: nn.Module, size: int, grid: int | None) -> dict[str, tuple[nn.Module, tuple, dict]]:
    if family == "unet":
        batch = torch.export.Dim("batch", min=1, max=64)
        return {"unet": (UNetGraph(module), (torch.zeros(2, 4, size, size),), {"image": {0: batch}})}
    prompts = torch.export.Dim("prompts", min=1, max=256)
    points = torch.export.Dim("points", min=1, max=64)
    coords = torch.zeros(2, 3, 2)
    labels = torch.tensor([[1.0, 2.0, 3.0]] * 2)
    return {
        "encoder": (ImageEncoder(module), (torch.zeros(1, 3, size, size),), {"image": None}),
        "decoder": (
            LowResDecoder(module),
            (torch.zeros(1, 256, grid, grid), coords, labels),
            {"image_embeddings": None, "point_coords": {0: prompts, 1: points}, "point_labels": {0: prompts, 1: points}},
        ),
    }


def export_aoti(module: nn.Module, layout: dict[str, Any], path: Path, device: str = "cpu") -> list[str]:
    """Compile every graph of ``module`` into one ``.pt2`` package at ``path``; returns the model names."""
    layout = {**layout, "format": "aoti", "device": device}
    family = layout["model"]["family"]
    size = int(layout["preprocessing"]["input_size"])
    module = module.to(device).eval()
    compiled: dict[str, list] = {}
    with traceable(module), torch.no_grad():
        for name, (graph, args, shapes) in _graphs(family, module, size, layout["model"].get("embedding_grid")).items():
            args = tuple(a.to(device) for a in args)
            program = torch.export.export(graph.eval(), args, dynamic_shapes=shapes, strict=False)
            options = {
                "aot_inductor.package": True,
                "aot_inductor.metadata": {LAYOUT_KEY: json.dumps(layout, sort_keys=True)},
            }
            compiled[name] = torch._inductor.aot_compile(program.module(), args, options=options)
    with atomic_path(path) as tmp:
        package_aoti(str(tmp) + ".pt2", compiled)
        Path(str(tmp) + ".pt2").replace(tmp)
    return list(compiled)




AOTI_KIND = "aoti"


def export_aoti_artifact(reference: str, out: Path, data: Path, samples: int = 2, split: str | None = "test", checkpoint: str | None = None, device: str = "cpu") -> Manifest:
    """Package ``reference`` into ``out/model.pt2``, check it against PyTorch on ``data`` (manifest last)."""
    manifest = load_manifest(data)
    rows = sample_rows(manifest, samples, split)
    if not rows:
        raise BadInput(f"{data} has no objects in split '{split}' to validate the package on")
    source = load_source(reference, checkpoint)
    seg = source.segmenter
    layout = base_layout(seg.name, seg.family, source.kwargs, source.embedding_grid, seg.preprocessing, reference, 0)
    models = export_aoti(source.module, layout, out / PACKAGE_FILE, device)
    report = validate_export(seg, AotiSegmenter(out / PACKAGE_FILE), rows, RowLoader(manifest, ArrayCache(None)))
    problems = failures(report, MAX_LOGIT_DIFF, MIN_DSC)
    if problems:
        raise MedkdError(f"the AOTInductor package disagrees with PyTorch: {'; '.join(problems)}")
    result = Manifest(
        kind=AOTI_KIND,
        config={"export": {**layout, "format": "aoti", "device": device, "models": models, "file": PACKAGE_FILE}},
        inputs=source.inputs + [ArtifactInput("data-manifest", str(data), sha256_file(data))],
        files=hash_files(out, [PACKAGE_FILE]),
        metrics={"validation": report},
    )
    return write_manifest(out, result)
