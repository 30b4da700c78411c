"""``medkd eval``: a model's DSC / NSD / IoU / HD95 on a manifest split, and agreement with a teacher."""

from __future__ import annotations

from pathlib import Path

import typer

from medkd.artifacts import sha256_file
from medkd.cli.output import stdout_console
from medkd.cli.vocabulary import device_option
from medkd.errors import BadInput


def _choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise BadInput(f"{option} must be one of {', '.join(choices)}, not '{value}'")
    return value


def eval_command(
    model: str = typer.Option(..., "--model", "-m", help="Zoo name (e.g. medsam-vit-b) or a medkd model artifact directory."),
    data: Path = typer.Option(..., "--data", "-d", help="Data manifest made by 'medkd data index'."),
    split: str = typer.Option("test", help="train, val or test."),
    prompt: str = typer.Option("box", help="box (ground-truth box) or point (object centre)."),
    crop: str = typer.Option(
        None, help="Override the crop the model was trained with: none (whole image) or box (window of 2x the box, at least 64 px)."
    ),
    against: str = typer.Option(None, "--against", help="Teacher (zoo name or artifact) to measure mask agreement with."),
    checkpoint: str = typer.Option(None, help="Weights for a zoo-name --model."),
    teacher_checkpoint: str = typer.Option(None, help="Weights for a zoo-name --against."),
    dataset: list[str] = typer.Option(None, "--dataset", help="Only these datasets (repeatable)."),
    limit: int = typer.Option(None, min=1, help="At most this many objects per dataset (manifest order)."),
    batch_size: int = typer.Option(4, min=1, help="Images (or crops) per encoder batch."),
    device: str = device_option(),
    data_root: Path = typer.Option(None, help="Where the data lives now, if it moved since indexing."),
    out: Path = typer.Option(None, "--out", "-o", help="Metrics JSON (default: eval-<model>-<split>.json)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither the preprocessing cache nor stored reference (teacher) masks."),
    volumes: bool = typer.Option(
        True, "--volumes/--no-volumes", help="Also score each object of a volume in 3D (3D box prompt, slice-by-slice propagation), beside the per-slice figures."
    ),
) -> None:
    """Evaluate a model on a manifest split: metrics JSON plus a table per dataset and modality."""
    from medkd.data import ArrayCache, RowLoader, default_cache_dir, load_manifest
    from medkd.data.datasets import PROMPTS
    from medkd.data.manifest import first_per_dataset
    from medkd.data.preprocessing import parse_crop
    from medkd.evaluation import build_report, evaluate, summary_table, write_report
    from medkd.evaluation.reference_masks import default_reference_dir
    from medkd.evaluation.volumes import evaluate_volumes
    from medkd.runtime import load_segmenter
    from medkd.zoo import get_spec

    _choice(prompt, PROMPTS, "--prompt")
    parse_crop(crop)
    manifest = load_manifest(data, data_root)
    rows = manifest.select(split, dataset or None)
    if limit is not None:
        rows = first_per_dataset(rows, limit)
    if not rows:
        raise BadInput(f"{data} has no objects in split '{split}'" + (f" of {', '.join(dataset)}" if dataset else ""))
    segmenter = load_segmenter(model, checkpoint, device)
    teacher = load_segmenter(against, teacher_checkpoint, device) if against else None
    for source, weights in ((model, checkpoint), (against, teacher_checkpoint)):
        if source is not None and weights is None and not Path(source).exists() and not get_spec(source).packaged:
            typer.echo(f"note: {source} has random weights (no checkpoint given)", err=True)
    loader = RowLoader(manifest, ArrayCache(None if no_cache else default_cache_dir()))
    references = None if no_cache else default_reference_dir()
    result = evaluate(segmenter, rows, loader, prompt, crop, batch_size, teacher, reference_dir=references)  # type: ignore[arg-type]
    per_volume = evaluate_volumes(segmenter, rows, loader, crop, batch_size) if volumes and prompt == "box" and any(r.slice is not None for r in rows) else None
    config = {
        "model": {"source": model, "name": segmenter.name, "input_size": segmenter.input_size, "checkpoint": checkpoint},
        "against": None
        if teacher is None
        else {"source": against, "name": teacher.name, "input_size": teacher.input_size, "checkpoint": teacher_checkpoint},
        "data": {"manifest": str(data), "sha256": sha256_file(data), "root": str(manifest.root)},
        "split": split,
        "datasets": sorted({r.dataset for r in rows}),
        "limit": limit,
        "prompt": prompt,
        "crop": result.preprocessing.crop,
        "preprocessing": result.preprocessing.to_dict(),
        "device": str(segmenter.device),
    }
    target = out or Path(f"eval-{Path(model).name}-{split}.json")
    write_report(target, build_report(result, config, per_volume))
    stdout_console().print(summary_table(result.summary, f"{segmenter.name} on {split} ({prompt} prompts, crop {result.preprocessing.crop})"))
    if per_volume is not None:
        stdout_console().print(summary_table(per_volume.summary, f"{segmenter.name} on {split} per volume (3D box prompts, propagated)"))
    typer.echo(f"wrote {target}")
