"""What the training stages (``medkd adapt``, ``medkd distill``) share on the command line: the
options common to both, recipe sections with flag overrides, ``--data`` resolution, and running
the stage on this process's rank."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from medkd.config import load_yaml, merge
from medkd.errors import BadInput

INDEXED_NAME = "data.jsonl"

Out = Annotated[Path, typer.Option("--out", "-o", help="Artifact directory to write.")]
Data = Annotated[Path, typer.Option("--data", "-d", help="Data manifest (medkd data index) or a data folder to index.")]
Recipe = Annotated[Path | None, typer.Option("--recipe", help="YAML recipe; its section for this stage gives the defaults.")]
Crop = Annotated[str | None, typer.Option("--crop", help="none | box (box-centred crops for small structures).")]
Steps = Annotated[int | None, typer.Option("--steps", help="Optimisation steps.")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Images per step and rank.")]
LearningRate = Annotated[float | None, typer.Option("--lr", help="Peak learning rate (AdamW).")]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed of initialisation, order and augmentation.")]
CheckpointEvery = Annotated[int | None, typer.Option("--checkpoint-every", help="Steps between resumable checkpoints.")]
Bf16 = Annotated[bool | None, typer.Option("--bf16/--no-bf16", help="bf16 autocast.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the unfinished run in --out.")]


def json_option(value: str | None, option: str) -> dict | None:
    """A JSON-object flag such as ``--model-kwargs``, or ``None`` when not given."""
    try:
        return json.loads(value) if value else None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{option} is not JSON: {exc}") from exc


def stage_values(recipe: Path | None, stage: str, flags: dict[str, Any], train_flags: dict[str, Any]) -> dict[str, Any]:
    """The recipe's ``stage`` section with the given flags on top (``None``: flag not given)."""
    section = load_yaml(recipe).get(stage, {}) if recipe else {}
    values = merge(section, flags)
    values["train"] = merge(section.get("train", {}), train_flags)
    return values


def resolve_manifest(data: Path, out: Path) -> Path:
    """``data`` itself if it is a manifest; a folder is indexed once into ``out/data.jsonl``.

    Under ``torchrun`` every rank may index at the same time: each writes the same content
    atomically, so readers only ever see a complete manifest.
    """
    from medkd.data import build_manifest, save_manifest

    if data.is_file():
        return data
    if not data.is_dir():
        raise BadInput(f"--data {data} is neither a manifest nor a folder")
    manifest_path = out / INDEXED_NAME
    if not manifest_path.exists():
        save_manifest(build_manifest(data), manifest_path)
    return manifest_path


def run_stage(runner: Callable[..., dict[str, Any]], config: Any, data: Path, out: Path, resume: bool, what: str) -> None:
    """Run a training stage on this rank (all ranks under ``torchrun``) and report on rank 0."""
    from medkd.distill.distributed import close_world, init_world

    manifest = resolve_manifest(data, out)
    world = init_world()
    try:
        metrics = runner(config, manifest, out, world, resume=resume)
    finally:
        close_world(world)
    if not world.is_main:
        return
    if metrics.get("skipped"):
        typer.echo(f"{out} already holds this {what}: nothing to do")
        return
    dsc = ((metrics.get("val") or {}).get("overall") or {}).get("dsc", {}).get("mean")
    typer.echo(f"{what} written to {out}" + (f" (validation DSC {dsc:.3f})" if dsc is not None else ""))
