"""``medkd distill``: train a small student from a SAM-family teacher (recipe section ``distill``)."""

from __future__ import annotations

from pathlib import Path

import typer

from medkd.cli.training import (
    BatchSize,
    Bf16,
    CheckpointEvery,
    Crop,
    Data,
    LearningRate,
    Out,
    Recipe,
    Resume,
    Seed,
    Steps,
    json_option,
    run_stage,
    stage_values,
)
from medkd.config import from_mapping
from medkd.errors import BadInput


def distill_command(
    out: Out,
    data: Data,
    recipe: Recipe = None,
    teacher: str = typer.Option(None, "--teacher", help="Zoo name of the teacher, e.g. sam-vit-h."),
    teacher_checkpoint: Path = typer.Option(None, "--teacher-checkpoint", help="Teacher weights (official state dict)."),
    teacher_run: Path = typer.Option(None, "--teacher-run", help="Teacher artifact directory (medkd adapt output)."),
    student: str = typer.Option(None, "--student", help="Zoo name of the student (prompt-loop: a decoupled student artifact)."),
    method: str = typer.Option(None, "--method", help="decoupled | kd-sam | sam2unet | prompt-loop."),
    student_kwargs: str = typer.Option(None, "--student-kwargs", help="JSON of student architecture arguments."),
    teacher_kwargs: str = typer.Option(None, "--teacher-kwargs", help="JSON of teacher architecture arguments."),
    crop: Crop = None,
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Teacher-target cache (default: teacher-targets in the medkd cache)."),
    cache_shard_mb: float = typer.Option(None, "--cache-shard-mb", help="Size at which a cache shard is written."),
    val_objects: int = typer.Option(None, "--val-objects", help="Validation objects (0: no validation)."),
    finetune_steps: int = typer.Option(None, "--finetune-steps", help="Ground-truth fine-tuning steps after distillation (0: none)."),
    steps: Steps = None,
    batch_size: BatchSize = None,
    lr: LearningRate = None,
    seed: Seed = None,
    checkpoint_every: CheckpointEvery = None,
    bf16: Bf16 = None,
    resume: Resume = False,
) -> None:
    """Distil a student: decoupled encoder KD, KD-SAM, SAM-to-U-Net or prompt-in-the-loop."""
    from medkd.artifacts import read_manifest
    from medkd.distill.distill import DistillConfig, run_distill

    if teacher_checkpoint is not None and teacher_run is not None:
        raise BadInput("give --teacher-checkpoint or --teacher-run, not both")
    if teacher_run is not None:
        model = read_manifest(teacher_run).config.get("model", {})
        if teacher is not None and teacher != model.get("name"):
            raise BadInput(f"--teacher {teacher} but {teacher_run} holds {model.get('name')}")
        teacher = model.get("name")
    weights = teacher_run or teacher_checkpoint
    values = stage_values(
        recipe,
        "distill",
        {
            "teacher": teacher,
            "teacher_checkpoint": str(weights) if weights else None,
            "student": student,
            "method": method,
            "student_kwargs": json_option(student_kwargs, "--student-kwargs"),
            "teacher_kwargs": json_option(teacher_kwargs, "--teacher-kwargs"),
            "crop": crop,
            "cache_dir": str(cache_dir) if cache_dir else None,
            "cache_shard_mb": cache_shard_mb,
            "val_objects": val_objects,
            "finetune_steps": finetune_steps,
        },
        {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "checkpoint_every": checkpoint_every, "bf16": bf16},
    )
    for key in ("teacher", "student"):
        if key not in values:
            raise BadInput(f"name the {key} with --{key} or in the recipe's distill section")
    run_stage(run_distill, from_mapping(DistillConfig, values, where="distill"), data, out, resume, "student")
