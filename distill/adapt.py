"""Teacher domain adaptation (``medkd adapt``): the MedSAM recipe on a SAM-family teacher.

Box prompts with MedSAM's jitter, Dice + BCE (plus the decoder's IoU head regressed on the real
IoU, as LiteMedSAM does, so every decoder parameter trains), AdamW, prompt encoder frozen; datasets
are drawn in equal shares (``balance_datasets``) so a few CT slices count as much as 5000 nuclei.
Methods: ``full`` (image encoder and mask decoder), ``decoder`` (mask decoder only), ``lora`` (low-rank
updates of the encoder's attention projections through ``peft``, merged into the weights when
saved; nothing else trains), ``adapter`` (Med-SA bottleneck adapters in the encoder blocks, trained
with the mask decoder; carried beside the base weights, see ``medkd.zoo.adapters``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from medkd.distill.distributed import World
from medkd.distill.losses import dice_bce, iou_regression
from medkd.distill.sam_forward import BoxPromptedSam
from medkd.distill.trainer import TrainConfig, Trainer
from peft import LoraConfig, get_peft_model
from torch import nn

from medkd.artifacts import MANIFEST_NAME, ArtifactInput, read_manifest, sha256_file
from medkd.data import ObjectDataset, RowLoader, load_manifest
from medkd.data.cache import ArrayCache, default_cache_dir
from medkd.errors import BadInput
from medkd.evaluation import evaluate
from medkd.runtime import wrap_module
from medkd.zoo import create_model, get_spec, save_model_artifact, trained_preprocessing
from medkd.zoo.adapters import add_adapters

Method = Literal["full", "decoder", "lora", "adapter"]
LORA_TARGETS = r".*blocks\.\d+\.attn\.(qkv|proj)"


@dataclass
class AdaptConfig:
    """What ``medkd adapt`` does; recipes (``recipes/*.yaml``) and flags fill it."""

    teacher: str
    method: Method = "full"
    checkpoint: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    crop: Literal["none", "box"] = "box"
    datasets: list[str] | None = None
    balance_datasets: bool = True
    lora_rank: int = 4
    lora_alpha: float = 8.0
    adapter_hidden: int = 64
    val_objects: int = 400
    train: TrainConfig = field(default_factory=TrainConfig)


class AdaptTask:
    """Box-prompted SAM trained on ground-truth masks."""

    def __init__(self, sam: nn.Module) -> None:
        self.module = BoxPromptedSam(sam)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        segmentation = dice_bce(outputs["logits"], batch["mask"])
        iou = iou_regression(outputs["iou"], outputs["logits"], batch["mask"])
        return segmentation + iou, {"seg_loss": float(segmentation.detach()), "iou_loss": float(iou.detach())}


def prepare_teacher(config: AdaptConfig) -> nn.Module:
    """The teacher with exactly the parameters of ``config.method`` left trainable."""
    sam = create_model(config.teacher, checkpoint=config.checkpoint, **config.model_kwargs)
    if get_spec(config.teacher).family != "sam":
        raise BadInput(f"adapt needs a SAM-family teacher, not '{config.teacher}'")
    sam.requires_grad_(False)
    if config.method == "full":
        sam.image_encoder.requires_grad_(True)
        sam.mask_decoder.requires_grad_(True)
    elif config.method == "decoder":
        sam.mask_decoder.requires_grad_(True)
    elif config.method == "lora":
        if not hasattr(sam.image_encoder, "blocks"):
            raise BadInput("lora needs a ViT image encoder (SAM or MedSAM)")
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules=LORA_TARGETS, lora_dropout=0.0)
        sam.image_encoder = get_peft_model(sam.image_encoder, lora)
    else:
        if not hasattr(sam.image_encoder, "blocks"):
            raise BadInput("adapter needs a ViT image encoder (SAM or MedSAM)")
        for adapter in add_adapters(sam.image_encoder, config.adapter_hidden):
            adapter.requires_grad_(True)
        sam.mask_decoder.requires_grad_(True)
    return sam


def finalize_teacher(sam: nn.Module) -> nn.Module:
    """Merge LoRA updates into the base weights; other methods are saved as they are."""
    if hasattr(sam.image_encoder, "merge_and_unload"):
        sam.image_encoder = sam.image_encoder.merge_and_unload()
    return sam.eval()


def trainable_fraction(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def dataset_balancing_weights(datasets: list[str]) -> torch.Tensor:
    """Per-item weights that give every dataset the same share of draws, whatever its size."""
    counts = Counter(datasets)
    return torch.tensor([1.0 / counts[name] for name in datasets], dtype=torch.float64)


def run_adapt(config: AdaptConfig, data: Path, out: Path, world: World, resume: bool = False) -> dict[str, Any]:
    """Train, validate and write the teacher artifact into ``out``; returns its metrics."""
    if (out / MANIFEST_NAME).exists():
        done = read_manifest(out, kind="teacher")
        if done.config.get("adapt") != asdict(config):
            raise BadInput(f"{out} holds a teacher made with another configuration; choose another --out")
        return {**done.metrics, "skipped": True}
    manifest = load_manifest(data)
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    train_rows = manifest.select("train", config.datasets)
    val_rows = manifest.select("val", config.datasets)
    if not train_rows:
        raise BadInput(f"{data} has no training objects{' in ' + ', '.join(config.datasets) if config.datasets else ''}")
    torch.manual_seed(config.train.seed)  # initialisation of new weights (scratch, LoRA, adapters)
    sam = prepare_teacher(config)
    trainable, total = trainable_fraction(sam)
    preprocessing = trained_preprocessing(config.teacher, config.model_kwargs, config.crop, config.checkpoint)
    dataset = ObjectDataset(train_rows, loader, preprocessing, train=True, seed=config.train.seed)
    out.mkdir(parents=True, exist_ok=True)
    weights = dataset_balancing_weights([row.dataset for row in train_rows]) if config.balance_datasets else None
    trainer = Trainer(AdaptTask(sam), dataset, config.train, out, world, sample_weights=weights)
    started = time.monotonic()
    trainer.run(resume=resume, description=f"adapt {config.teacher} ({config.method})")
    train_seconds = time.monotonic() - started
    sam = finalize_teacher(sam)
    metrics: dict[str, Any] = {
        "trainable_params": trainable,
        "total_params": total,
        "train_seconds_this_session": round(train_seconds, 1),
        "train_items": len(dataset),
    }
    if world.is_main:
        sampled = val_rows[:: max(1, len(val_rows) // config.val_objects)] if val_rows else []
        if sampled:
            result = evaluate(wrap_module(sam, config.teacher, preprocessing, world.device), sampled, loader)
            metrics["val"] = result.summary
        inputs = [ArtifactInput(kind="data-manifest", path=str(data), sha256=sha256_file(data))]
        if config.checkpoint:
            inputs.append(ArtifactInput(kind="checkpoint", path=str(config.checkpoint), sha256=sha256_file(config.checkpoint)))
        save_model_artifact(
            sam.cpu(),
            out,
            name=config.teacher,
            kind="teacher",
            model_kwargs=config.model_kwargs,
            config={"adapt": asdict(config)},
            inputs=inputs,
            metrics=metrics,
            preprocessing=preprocessing,
        )
    trainer.finish()
    return metrics
