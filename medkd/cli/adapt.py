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
from medkd.config import from_mapping, merge
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
    lora_rank: int = typer.Option(None, "--lora-rank", help="Rank of the LoRA updates."),
    lora_encoder: bool = typer.Option(None, "--lora-encoder/--no-lora-encoder", help="LoRA on the encoder's attention (off: the decoder's alone, on cached embeddings)."),
    lora_decoder: bool = typer.Option(None, "--lora-decoder/--no-lora-decoder", help="LoRA on the mask decoder's modules too."),
    federated: bool = typer.Option(None, "--federated/--no-federated", help="Adapt across sites on Flower (recipe key adapt.federated)."),
    rounds: int = typer.Option(None, "--rounds", help="Federated rounds; every site trains --steps local steps a round."),
    sites: str = typer.Option(None, "--sites", help="Simulated sites: dataset (one per dataset) | subjects:N."),
    aggregation: str = typer.Option(None, "--aggregation", help="fedavg | fedprox."),
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
            "lora_rank": lora_rank,
            "lora_encoder": lora_encoder,
            "lora_decoder": lora_decoder,
        },
        {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "checkpoint_every": checkpoint_every, "bf16": bf16},
    )
    federated_flags = {"rounds": rounds, "sites": sites, "aggregation": aggregation}
    if federated is False:
        values["federated"] = None
    elif federated or values.get("federated") is not None:
        values["federated"] = merge(values.get("federated") or {}, federated_flags)
    elif any(value is not None for value in federated_flags.values()):
        raise BadInput("--rounds, --sites and --aggregation need --federated")
    if "teacher" not in values:
        raise BadInput("name the teacher with --teacher or in the recipe's adapt section")
    run_stage(run_adapt, from_mapping(AdaptConfig, values, where="adapt"), data, out, resume, "teacher")
