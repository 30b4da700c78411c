"""``medkd segment``: one image or NIfTI slice, box / point prompts, one mask file."""

from __future__ import annotations

from pathlib import Path

import typer

from medkd.cli.trust_options import allow_unsigned_option, trust_store_option
from medkd.data.modality import canonical_modality
from medkd.errors import BadInput


def segment_command(
    model: str = typer.Option(None, "--model", "-m", help="Export directory (ONNX Runtime), .pt2 package, TensorRT .plan, or any model eval takes."),
    bundle: Path = typer.Option(None, "--bundle", "-b", help="A NAME.medkd bundle instead of --model: checked (signed by a trusted key), then run from what it carries."),
    variant: str = typer.Option(None, "--variant", help="Bundle variant (default: TensorRT engines that fit this device, else the first ONNX)."),
    trust_store: str = trust_store_option(),
    allow_unsigned: bool = allow_unsigned_option(),
    image: Path = typer.Option(..., "--image", "-i", help="PNG / JPEG / NIfTI / DICOM / NPZ image."),
    out: Path = typer.Option(..., "--out", "-o", help="mask.png (0/255) or mask.nii.gz."),
    box: str = typer.Option(None, "--box", help="x0,y0,x1,y1 in original pixels (ends inclusive)."),
    point: list[str] = typer.Option(None, "--point", help="x,y[,label] (label 1 object, 0 background); repeatable."),
    slice_index: int = typer.Option(None, "--slice", help="Slice of a volume (NIfTI array axis 2)."),
    modality: str = typer.Option("unknown", help="Modality as in the manifest (CT windows Hounsfield units; others clip percentiles)."),
    crop: str = typer.Option(None, help="none or box: overrides the crop the model was trained with (default: its own; a different one warns)."),
) -> None:
    """Segment one object with eval's exact pre- and post-processing and write its mask."""
    from medkd.runtime import load_segmenter
    from medkd.runtime.segment import (
        MASK_SUFFIXES,
        load_slice,
        parse_box,
        parse_points,
        segment_image,
        write_mask,
    )

    if (model is None) == (bundle is None) or ((variant is not None or trust_store is not None or allow_unsigned) and bundle is None):
        raise BadInput("give either --model or --bundle (and --variant, --trust-store, --allow-unsigned only with --bundle)")
    if not image.exists():
        raise BadInput(f"{image} does not exist")
    if not out.name.lower().endswith(MASK_SUFFIXES):
        raise BadInput(f"--out must end in {', '.join(MASK_SUFFIXES)}, not {out.name}")
    points, labels = parse_points(point)
    rgb = load_slice(image, canonical_modality(modality), slice_index)
    if bundle is not None:
        from medkd.bundle import load_bundle_segmenter, trust_policy

        segmenter = load_bundle_segmenter(bundle, trust_policy(trust_store, allow_unsigned), variant)
    else:
        segmenter = load_segmenter(model, None, "auto")
    mask = segment_image(segmenter, rgb, None if box is None else parse_box(box), points, labels, crop)
    write_mask(mask, out, image, slice_index)
    typer.echo(f"wrote {out}: {int(mask.sum())} of {mask.size} pixels")
