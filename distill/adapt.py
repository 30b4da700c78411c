"""Teacher domain adaptation (``medkd adapt``): the MedSAM recipe on a SAM-family teacher.

Box prompts with MedSAM's jitter, Dice + BCE (plus the decoder's IoU head regressed on the real
IoU, as LiteMedSAM does, so every decoder parameter trains), AdamW, prompt encoder frozen; datasets
are drawn in equal shares (``balance_datasets``) so a few CT slices count as much as 5000 nuclei.
Methods: ``full`` (image encoder and mask decoder), ``decoder`` (mask decoder only, trained on the
frozen encoder's embeddings from the teacher-target cache: the encoder runs once per image, and the
cached embeddings are the very targets a later distillation of this teacher reads), ``lora``
(low-rank updates through ``peft`` of the encoder's attention projections, and with
``lora_decoder`` of the mask decoder's ``lora_decoder_modules`` too, merged into the weights when
saved; nothing else trains; with ``lora_encoder`` off the encoder stays frozen and the decoder's
low-rank updates train on the cached embeddings, as ``decoder`` does), ``adapter`` (Med-SA
bottleneck adapters in the encoder's attention blocks, trained with the mask decoder; carried
beside the base weights, see ``medkd.zoo.adapters``). SAM ViTs and TinyViTs
(LiteMedSAM) take every method.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from medkd.distill.distributed import World
from medkd.distill.losses import dice_bce, iou_regression
from medkd.distill.embedding_cache import EmbeddingCache
from medkd.distill.selection import capped_per_dataset, dataset_balancing_weights, sampled
from medkd.distill.sam_forward import BoxPromptedSam, CachedEmbeddingSam
from medkd.distill.teacher_targets import CachedTargetDataset, cached_targets, default_teacher_cache
from medkd.distill.trainer import TrainConfig, Trainer
from peft import LoraConfig, get_peft_model
from torch import nn
from torch.utils.data import Dataset

from medkd.artifacts import MANIFEST_NAME, ArtifactInput, read_manifest, sha256_file
from medkd.config import from_mapping
from medkd.data import ObjectDataset, RowLoader, load_manifest
from medkd.data.cache import ArrayCache, default_cache_dir
from medkd.errors import BadInput
from medkd.evaluation import evaluate
from medkd.runtime import wrap_module
from medkd.zoo import create_model, get_spec, save_model_artifact, trained_preprocessing
from medkd.zoo.adapters import add_adapters, attention_blocks
from medkd.zoo.artifact import architecture_kwargs

Method = Literal["full", "decoder", "lora", "adapter"]
Aggregation = Literal["fedavg", "fedprox"]
LORA_TARGETS = r".*blocks\.\d+\.attn\.(qkv|proj)"
DECODER_ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]


@dataclass
class FederatedConfig:
    """Federated adaptation (``medkd adapt --federated``, see ``medkd.distill.federated``).

    Each round every site trains ``train.steps`` local steps from the global trainable parameters
    and sends them back; the server aggregates them (Flower's FedAvg, or FedProx with a proximal term
    of weight ``proximal_mu`` in every site's loss). ``sites`` splits one manifest into simulated
    sites: ``dataset`` (one per dataset) or ``subjects:N`` (N groups of subjects). With
    ``dp_noise_multiplier`` > 0, Flower's server-side fixed-clipping DP wrapper clips every site's
    update to ``dp_clipping_norm`` and adds Gaussian noise to the aggregate.
    """

    rounds: int = 3
    aggregation: Aggregation = "fedavg"
    proximal_mu: float = 0.01
    sites: str = "dataset"
    dp_noise_multiplier: float = 0.0
    dp_clipping_norm: float = 1.0


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
    lora_encoder: bool = True
    lora_decoder: bool = False
    lora_decoder_modules: list[str] = field(default_factory=lambda: list(DECODER_ATTENTION))
    adapter_hidden: int = 64
    val_objects: int = 400
    max_objects_per_dataset: int | None = None
    # decoder: the embeddings come from the teacher-target cache (as in ``medkd distill``)
    cache_dir: str | None = None
    cache_shard_mb: float = 256.0
    fill_batch_size: int = 4
    teacher_bf16: bool = False
    train: TrainConfig = field(default_factory=TrainConfig)
    federated: FederatedConfig | None = None


class AdaptTask:
    """Box-prompted SAM (or its decoder on cached embeddings) trained on ground-truth masks."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

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
        if not (config.lora_encoder or config.lora_decoder):
            raise BadInput("lora with neither lora_encoder nor lora_decoder trains nothing")
        if config.lora_encoder:
            if not attention_blocks(sam.image_encoder):
                raise BadInput("lora needs an image encoder with attention blocks (SAM ViT or TinyViT)")
            sam.image_encoder = get_peft_model(sam.image_encoder, _lora(config, LORA_TARGETS))
        if config.lora_decoder:
            decoder_targets = rf".*\.({'|'.join(config.lora_decoder_modules)})"
            sam.mask_decoder = get_peft_model(sam.mask_decoder, _lora(config, decoder_targets))
    else:
        if not attention_blocks(sam.image_encoder):
            raise BadInput("adapter needs an image encoder with attention blocks (SAM ViT or TinyViT)")
        for adapter in add_adapters(sam.image_encoder, config.adapter_hidden):
            adapter.requires_grad_(True)
        sam.mask_decoder.requires_grad_(True)
    return sam


def _lora(config: AdaptConfig, targets: str) -> LoraConfig:
    return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules=targets, lora_dropout=0.0)


def finalize_teacher(sam: nn.Module) -> nn.Module:
    """Merge LoRA updates into the base weights; other methods are saved as they are."""
    for part in ("image_encoder", "mask_decoder"):
        module = getattr(sam, part)
        if hasattr(module, "merge_and_unload"):
            setattr(sam, part, module.merge_and_unload())
    return sam.eval()


def on_cached_embeddings(config: AdaptConfig) -> bool:
    """Whether the method leaves the encoder frozen, so that training reads its cached embeddings."""
    return config.method == "decoder" or (config.method == "lora" and not config.lora_encoder)


def trainable_fraction(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def training_task(
    config: AdaptConfig, sam: nn.Module, rows: list, loader: RowLoader, preprocessing: Any, world: World
) -> tuple[Dataset, AdaptTask, dict[str, Any]]:
    """The training items of ``rows`` and the task that trains ``sam`` on them (the decoder method
    on the teacher-target cache's embeddings, filled here first), with the cache's metrics."""
    if not on_cached_embeddings(config):
        dataset = ObjectDataset(rows, loader, preprocessing, train=True, seed=config.train.seed)
        return dataset, AdaptTask(BoxPromptedSam(sam)), {}
    cache = EmbeddingCache(config.cache_dir or default_teacher_cache(), int(config.cache_shard_mb * (1 << 20)))
    architecture = architecture_kwargs(config.teacher, config.checkpoint, config.model_kwargs)
    keys, filled = cached_targets(
        sam.to(world.device), config.teacher, architecture, "embedding", rows, loader, preprocessing,
        cache, world, config.fill_batch_size, config.teacher_bf16,
    )  # fmt: skip
    items = ObjectDataset(rows, loader, preprocessing)
    dataset = CachedTargetDataset(items, keys, cache, config.train.seed)
    return dataset, AdaptTask(CachedEmbeddingSam(sam)), {"cache": {"directory": str(cache.directory), **filled}}


def run_adapt(config: AdaptConfig, data: Path, out: Path, world: World, resume: bool = False) -> dict[str, Any]:
    """Train, validate and write the teacher artifact into ``out``; returns its metrics."""
    if (out / MANIFEST_NAME).exists():
        done = read_manifest(out, kind="teacher")
        if stored_adapt_config(done.config.get("adapt")) != asdict(config):
            raise BadInput(f"{out} holds a teacher made with another configuration; choose another --out")
        return {**done.metrics, "skipped": True}
    if config.federated is not None:
        try:
            from medkd.distill.federated_local import run_federated_adapt
        except ImportError as exc:
            if (exc.name or "").split(".")[0] != "flwr":
                raise
            raise BadInput("federated adaptation needs Flower: pip install 'medkd[federated]'") from exc
        return run_federated_adapt(config, data, out, world)
    manifest = load_manifest(data)
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    train_rows = capped_per_dataset(manifest.select("train", config.datasets), config.max_objects_per_dataset)
    val_rows = manifest.select("val", config.datasets)
    if not train_rows:
        raise BadInput(f"{data} has no training objects{' in ' + ', '.join(config.datasets) if config.datasets else ''}")
    torch.manual_seed(config.train.seed)  # initialisation of new weights (scratch, LoRA, adapters)
    sam = prepare_teacher(config)
    trainable, total = trainable_fraction(sam)
    preprocessing = trained_preprocessing(config.teacher, config.model_kwargs, config.crop, config.checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    dataset, task, metrics = training_task(config, sam, train_rows, loader, preprocessing, world)
    weights = dataset_balancing_weights([row.dataset for row in train_rows]) if config.balance_datasets else None
    trainer = Trainer(task, dataset, config.train, out, world, sample_weights=weights)
    started = time.monotonic()
    trainer.run(resume=resume, description=f"adapt {config.teacher} ({config.method})")
    train_seconds = time.monotonic() - started
    sam = finalize_teacher(sam)
    metrics.update(
        trainable_params=trainable,
        total_params=total,
        train_seconds_this_session=round(train_seconds, 1),
        train_items=len(dataset),
    )
    if world.is_main:
        metrics.update(validate_teacher(config, sam, val_rows, loader, preprocessing, world))
        save_teacher(config, sam, out, teacher_inputs(config, data), metrics, preprocessing)
    trainer.finish()
    return metrics


def stored_adapt_config(stored: Any) -> dict[str, Any] | None:
    """A stored adapt configuration with the fields added since it was written at their defaults
    (``None`` if it is not one)."""
    try:
        return asdict(from_mapping(AdaptConfig, stored, where="adapt"))
    except BadInput:
        return None


def validate_teacher(
    config: AdaptConfig, sam: nn.Module, rows: list, loader: RowLoader, preprocessing: Any, world: World
) -> dict[str, Any]:
    """``{"val": summary}`` of the finalised teacher on about ``config.val_objects`` of ``rows`` (``{}`` if none)."""
    validation = sampled(rows, config.val_objects)
    if not validation:
        return {}
    return {"val": evaluate(wrap_module(sam, config.teacher, preprocessing, world.device), validation, loader).summary}


def teacher_inputs(config: AdaptConfig, data: Path | None) -> list[ArtifactInput]:
    """What an adapted teacher was made from: the data manifest (where one was read) and the checkpoint."""
    inputs = [ArtifactInput(kind="data-manifest", path=str(data), sha256=sha256_file(data))] if data else []
    if config.checkpoint:
        inputs.append(ArtifactInput(kind="checkpoint", path=str(config.checkpoint), sha256=sha256_file(config.checkpoint)))
    return inputs


def save_teacher(
    config: AdaptConfig, sam: nn.Module, out: Path, inputs: list[ArtifactInput], metrics: dict[str, Any], preprocessing: Any
) -> None:
    """Write the finalised teacher into ``out`` as the model artifact distill / quantize / pack take."""
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
