"""``medkd segment``: one image or slice, one object per box (or one by points), a mask file, an overlay
beside it, and a line per object (``--json``: JSON Lines for scripts); or a whole volume from 3D boxes
(``--box3d``) or key-slice boxes (``--slice`` with ``--propagate``): a label volume on the source's grid
(:mod:`medkd.cli.segment_volume`). Exit 1 when an object comes out empty (a warning names it); nothing
is written when every object does."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from medkd.cli.trust_options import allow_unsigned_option, trust_store_option
from medkd.cli.vocabulary import device_option, hidden_alias, model_option, one_of, out_option
from medkd.data.modality import canonical_modality
from medkd.errors import BadInput, MedkdWarning

BUNDLE_SUFFIX = ".medkd"


def _open_model(model: str, device: str, variant: str | None, trust_store: str | None, allow_unsigned: bool) -> Any:
    """The segmenter of a bundle (checked under the trust store), an exported model, or a PyTorch model."""
    from medkd.runtime.exported import is_exported, open_exported

    if model.endswith(BUNDLE_SUFFIX):
        from medkd.bundle import load_bundle_segmenter, trust_policy

        return load_bundle_segmenter(Path(model), trust_policy(trust_store, allow_unsigned), variant)
    if variant is not None or trust_store is not None or allow_unsigned:
        raise BadInput(f"--variant, --trust-store and --allow-unsigned apply to a NAME{BUNDLE_SUFFIX} bundle only")
    if is_exported(Path(model)):
        return open_exported(Path(model))
    from medkd.runtime.segmenter import load_segmenter  # a PyTorch model: the training install

    return load_segmenter(model, None, device)


def _describe(record: dict[str, Any]) -> str:
    box = "-" if record["box"] is None else ",".join(map(str, record["box"]))
    score = "-" if record["score"] is None else f"{record['score']:.3f}"
    return f"object {record['object']}: {record['area']} px, box {box}, {record['score_kind'].replace('_', ' ')} {score}"


def segment_command(
    model: str = model_option("Zoo name, model artifact, export directory (ONNX Runtime), .pt2 package, TensorRT .plan or NAME.medkd bundle (run only when signed by a trusted key)."),
    image: Path = typer.Option(..., "--image", "-i", help="PNG / JPEG / NIfTI / DICOM / NPZ image."),
    out: Path = out_option(
        "mask.png or mask.nii.gz (one object: 0 / 255 in PNG; several: their numbers 1..N); a volume: labels.nii.gz on the source's grid "
        "(labels.npz for an NPZ source); the overlay goes beside it."
    ),
    box: list[str] = typer.Option(None, "--box", help="x0,y0,x1,y1 in original pixels (ends inclusive); repeatable, one object per box."),
    point: list[str] = typer.Option(None, "--point", help="x,y[,label] (label 1 object, 0 background); repeatable; one object (with at most one --box)."),
    box3d: list[str] = typer.Option(
        None, "--box3d", help="x0,y0,z0,x1,y1,z1 in voxels of a volume (z: the slice, NIfTI array axis 2; ends inclusive); repeatable, one object each: the whole volume is segmented."
    ),
    slice_index: int = typer.Option(None, "--slice", help="Slice of a volume (NIfTI array axis 2); with --propagate the key slice of the --box prompts."),
    propagate: bool = typer.Option(False, "--propagate", help="With --slice and --box: propagate each object from the key slice through the volume; write a label volume."),
    batch: int = typer.Option(8, "--batch", min=1, help="Volume slices per encoder batch."),
    modality: str = typer.Option("unknown", help="Modality as in the manifest (CT windows Hounsfield units; others clip percentiles)."),
    crop: str = typer.Option(None, help="none or box: overrides the crop the model was trained with (default: its own; a different one warns)."),
    device: str = device_option(),
    overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="Also write NAME.overlay.png beside the mask: the image with each object tinted, boxed and numbered."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line per object (object, area, box, score, score_kind, prompt) and nothing else."),
    variant: str = typer.Option(None, "--variant", help="Bundle variant (default: TensorRT engines that fit this device, else the first ONNX)."),
    trust_store: str = trust_store_option(),
    allow_unsigned: bool = allow_unsigned_option(),
    bundle: str = hidden_alias("--bundle", "-b"),
) -> None:
    """Segment objects with eval's exact pre- and post-processing; write their mask and an overlay (for --box3d / --propagate, a label volume on the source's grid)."""
    from medkd.data.preprocessing import parse_crop
    from medkd.runtime.mask_files import check_mask_path, write_outputs
    from medkd.runtime.segment import load_slice, parse_boxes, parse_points, segment_objects

    model = one_of("--model", model, bundle, "--bundle")  # type: ignore[assignment]
    volume = bool(box3d) or propagate
    if volume:
        from medkd.cli.segment_volume import segment_volume_command
        from medkd.runtime.volume_files import check_volume_path

        check_volume_path(out, image)
        if point or (box and not propagate) or (propagate and not (box and slice_index is not None)):
            raise BadInput("a volume takes --box3d, or --box with --slice and --propagate (no --point)")
    else:
        check_mask_path(out)
    parse_crop(crop)
    if not image.exists():
        raise BadInput(f"{image} does not exist")
    if volume:
        segmenter = _open_model(model, device, variant, trust_store, allow_unsigned)
        segment_volume_command(segmenter, image, out, canonical_modality(modality), box3d, box, slice_index, crop, batch, overlay, as_json)
        return
    points, labels = parse_points(point)
    rgb = load_slice(image, canonical_modality(modality), slice_index)
    boxes = parse_boxes(box, rgb.shape[:2])
    segmenter = _open_model(model, device, variant, trust_store, allow_unsigned)
    objects = segment_objects(segmenter, rgb, boxes, points, labels, crop)
    records = [obj.record(number) for number, obj in enumerate(objects, start=1)]
    report_objects(records, "area", lambda: write_outputs(objects, rgb, out, image, slice_index, overlay), _describe, as_json)


def report_objects(records: list[dict[str, Any]], size: str, write: Callable[[], list[Path]], describe: Callable[[dict[str, Any]], str], as_json: bool) -> None:
    """Write the outputs (``write``) unless every object is empty (``record[size] == 0``), print a line per
    object, warn of each empty one; exit 1 when any is."""
    empty = [record for record in records if record[size] == 0]
    written = [] if len(empty) == len(records) else write()
    for record in records:
        typer.echo(json.dumps(record) if as_json else describe(record))
    for record in empty:
        nothing = "; nothing written" if not written else ""
        warnings.warn(f"object {record['object']} ({json.dumps(record['prompt'])}): the mask is empty{nothing}", MedkdWarning, stacklevel=1)
    if written and not as_json:
        typer.echo(f"wrote {', '.join(str(path) for path in written)}")
    if empty:
        raise typer.Exit(1)
