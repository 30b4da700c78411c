"""``medkd adapt``: adapt a SAM-family teacher to medical images (or train the stand-in teacher)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medkd.cli.stage_data import resolve_manifest
from medkd.config import from_mapping, load_yaml, merge
from medkd.errors import BadInput


def adapt_command(
    out: Path = typer.Option(..., "--out", help="Artifact directory of the adapted teacher."),
    data: Path = typer.Option(..., "--data", help="Data manifest (medkd data index) or a data folder to index."),
    recipe: Path = typer.Option(None, "--recipe", help="YAML recipe; its 'adapt' section gives the defaults."),
    teacher: str = typer.Option(None, "--teacher", help="Zoo name of the teacher, e.g. sam-vit-b."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Teacher weights (official state dict or artifact)."),
    method: str = typer.Option(None, "--method", help="full | decoder | lora | adapter."),
    model_kwargs: str = typer.Option(None, "--model-kwargs", help="JSON of architecture overrides."),
    crop: str = typer.Option(None, "--crop", help="none | box (box-centred crops for small structures)."),
    steps: int = typer.Option(None, "--steps", help="Optimisation steps."),
    batch_size: int = typer.Option(None, "--batch-size", help="Images per step and rank."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (AdamW)."),
    seed: int = typer.Option(None, "--seed", help="Seed of initialisation, order and augmentation."),
    checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Steps between resumable checkpoints."),
    bf16: bool = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast."),
    resume: bool = typer.Option(False, "--resume", help="Continue the unfinished run in --out."),
) -> None:
    """Adapt a teacher with the MedSAM recipe: box prompts, Dice + BCE, prompt encoder frozen."""
    from medkd.distill.adapt import AdaptConfig, run_adapt
    from medkd.distill.distributed import close_world, init_world

    section = load_yaml(recipe).get("adapt", {}) if recipe else {}
    train = merge(
        section.get("train", {}),
        {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "checkpoint_every": checkpoint_every, "bf16": bf16},
    )
    try:
        kwargs = json.loads(model_kwargs) if model_kwargs else None
    except json.JSONDecodeError as exc:
        raise BadInput(f"--model-kwargs is not JSON: {exc}") from exc
    values = merge(
        section,
        {"teacher": teacher, "checkpoint": str(checkpoint) if checkpoint else None, "method": method, "crop": crop, "model_kwargs": kwargs},
    )
    values["train"] = train
    if "teacher" not in values:
        raise BadInput("name the teacher with --teacher or in the recipe's adapt section")
    config = from_mapping(AdaptConfig, values, where="adapt")
    manifest = resolve_manifest(data, out)
    world = init_world()
    try:
        metrics = run_adapt(config, manifest, out, world, resume=resume)
    finally:
        close_world(world)
    if world.is_main:
        if metrics.get("skipped"):
            typer.echo(f"{out} already holds this teacher: nothing to do")
            return
        overall = metrics.get("val", {}).get("overall", {})
        dsc = overall.get("dsc", {}).get("mean")
        typer.echo(f"teacher written to {out}" + (f" (validation DSC {dsc:.3f})" if dsc is not None else ""))
