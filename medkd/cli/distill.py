"""``medkd distill``: train a small student from a SAM-family teacher (recipe section ``distill``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medkd.cli.stage_data import resolve_manifest
from medkd.config import from_mapping, load_yaml, merge
from medkd.errors import BadInput


def _json_option(value: str | None, option: str) -> dict | None:
    try:
        return json.loads(value) if value else None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{option} is not JSON: {exc}") from exc


def distill_command(
    out: Path = typer.Option(..., "--out", help="Artifact directory of the student."),
    data: Path = typer.Option(..., "--data", help="Data manifest (medkd data index) or a data folder to index."),
    recipe: Path = typer.Option(None, "--recipe", help="YAML recipe; its 'distill' section gives the defaults."),
    teacher: str = typer.Option(None, "--teacher", help="Zoo name of the teacher, e.g. sam-vit-h."),
    teacher_checkpoint: Path = typer.Option(None, "--teacher-checkpoint", help="Teacher weights (official state dict)."),
    teacher_run: Path = typer.Option(None, "--teacher-run", help="Teacher artifact directory (medkd adapt output)."),
    student: str = typer.Option(None, "--student", help="Zoo name of the student (prompt-loop: a decoupled student artifact)."),
    method: str = typer.Option(None, "--method", help="decoupled | kd-sam | sam2unet | prompt-loop."),
    student_kwargs: str = typer.Option(None, "--student-kwargs", help="JSON of student architecture arguments."),
    teacher_kwargs: str = typer.Option(None, "--teacher-kwargs", help="JSON of teacher architecture arguments."),
    crop: str = typer.Option(None, "--crop", help="none | box (box-centred crops for small structures)."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Teacher-target cache (default: teacher-targets in the medkd cache)."),
    cache_shard_mb: float = typer.Option(None, "--cache-shard-mb", help="Size at which a cache shard is written."),
    val_objects: int = typer.Option(None, "--val-objects", help="Validation objects (0: no validation)."),
    decoder_steps: int = typer.Option(None, "--decoder-steps", help="Decoder fine-tuning steps after encoder KD (0: none)."),
    steps: int = typer.Option(None, "--steps", help="Optimisation steps."),
    batch_size: int = typer.Option(None, "--batch-size", help="Images per step and rank."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (AdamW)."),
    seed: int = typer.Option(None, "--seed", help="Seed of initialisation, order and augmentation."),
    checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Steps between resumable checkpoints."),
    bf16: bool = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast."),
    resume: bool = typer.Option(False, "--resume", help="Continue the unfinished run in --out."),
) -> None:
    """Distil a student: decoupled encoder KD, KD-SAM, SAM-to-U-Net or prompt-in-the-loop."""
    from medkd.artifacts import read_manifest
    from medkd.distill.distill import DistillConfig, run_distill
    from medkd.distill.distributed import close_world, init_world

    if teacher_checkpoint is not None and teacher_run is not None:
        raise BadInput("give --teacher-checkpoint or --teacher-run, not both")
    section = load_yaml(recipe).get("distill", {}) if recipe else {}
    train = merge(
        section.get("train", {}),
        {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "checkpoint_every": checkpoint_every, "bf16": bf16},
    )
    if teacher_run is not None:
        model = read_manifest(teacher_run).config.get("model", {})
        if teacher is not None and teacher != model.get("name"):
            raise BadInput(f"--teacher {teacher} but {teacher_run} holds {model.get('name')}")
        teacher = model.get("name")
    weights = teacher_run or teacher_checkpoint
    values = merge(
        section,
        {
            "teacher": teacher,
            "teacher_checkpoint": str(weights) if weights else None,
            "student": student,
            "method": method,
            "student_kwargs": _json_option(student_kwargs, "--student-kwargs"),
            "teacher_kwargs": _json_option(teacher_kwargs, "--teacher-kwargs"),
            "crop": crop,
            "cache_dir": str(cache_dir) if cache_dir else None,
            "cache_shard_mb": cache_shard_mb,
            "val_objects": val_objects,
            "decoder_steps": decoder_steps,
        },
    )
    values["train"] = train
    for key in ("teacher", "student"):
        if key not in values:
            raise BadInput(f"name the {key} with --{key} or in the recipe's distill section")
    config = from_mapping(DistillConfig, values, where="distill")
    manifest = resolve_manifest(data, out)
    world = init_world()
    try:
        metrics = run_distill(config, manifest, out, world, resume=resume)
    finally:
        close_world(world)
    if world.is_main:
        overall = (metrics.get("val") or {}).get("overall", {})
        dsc = overall.get("dsc", {}).get("mean")
        typer.echo(f"student written to {out}" + (f" (validation DSC {dsc:.3f})" if dsc is not None else ""))
