"""``medkd adapt``: adapt a SAM-family teacher to medical images (or train the stand-in teacher)."""

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


def adapt_command(
    out: Out,
    data: Data,
    recipe: Recipe = None,
    teacher: str = typer.Option(None, "--teacher", help="Zoo name of the teacher, e.g. sam-vit-b."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Teacher weights (official state dict or artifact)."),
    method: str = typer.Option(None, "--method", help="full | decoder | lora | adapter."),
    model_kwargs: str = typer.Option(None, "--model-kwargs", help="JSON of architecture overrides."),
    crop: Crop = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    lr: LearningRate = None,
    seed: Seed = None,
    checkpoint_every: CheckpointEvery = None,
    bf16: Bf16 = None,
    resume: Resume = False,
) -> None:
    """Adapt a teacher with the MedSAM recipe: box prompts, Dice + BCE, prompt encoder frozen."""
    from medkd.distill.adapt import AdaptConfig, run_adapt

    values = stage_values(
        recipe,
        "adapt",
        {
            "teacher": teacher,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "method": method,
            "crop": crop,
            "model_kwargs": json_option(model_kwargs, "--model-kwargs"),
        },
        {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "checkpoint_every": checkpoint_every, "bf16": bf16},
    )
    if "teacher" not in values:
        raise BadInput("name the teacher with --teacher or in the recipe's adapt section")
    run_stage(run_adapt, from_mapping(AdaptConfig, values, where="adapt"), data, out, resume, "teacher")
