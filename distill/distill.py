"""``medkd distill``: a small student from a SAM-family teacher, by one of four methods.

- ``decoupled`` (MobileSAM / LiteMedSAM) and ``kd-sam`` (Patil et al. 2025): see ``medkd.distill.decoupled``.
- ``sam2unet`` (Shi et al. 2024): see ``medkd.distill.sam2unet``.
- ``prompt-loop`` (EdgeSAM phase 2), from a decoupled student artifact: see ``medkd.distill.prompt_loop``.

Every method first fills the teacher-target cache (``medkd.distill.embedding_cache``) for the training
objects, so the heavy teacher encoder runs once per image, never per epoch. Training phases run in
sub-directories of the output (``kd/``, ``decoder/``), each resumable; a finished phase leaves its
student there, so a resumed run starts at the phase it was in. The output is a zoo model artifact of
the student (``load_model``); SAM-family students are complete SAM state dicts.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from medkd.distill.adapt import dataset_balancing_weights
from medkd.distill.decoupled import (
    DecoderTask,
    EncoderKDTask,
    copy_prompt_path,
    embedding_grid,
    keep_finetuned_decoder,
)
from medkd.distill.distributed import World
from medkd.distill.embedding_cache import EmbeddingCache
from medkd.distill.perceptual import teacher_features, vgg_features
from medkd.distill.prompt_loop import PromptHead, PromptLoopTask
from medkd.distill.sam2unet import UNetKDTask
from medkd.distill.teacher_targets import (
    CachedTargetDataset,
    TargetKeys,
    fill_cache,
    teacher_identity,
)
from medkd.distill.trainer import TrainConfig, Trainer
from torch import nn

from medkd.artifacts import ArtifactInput, as_input, read_manifest, sha256_file
from medkd.data import ObjectDataset, RowLoader, load_manifest
from medkd.data.cache import ArrayCache, default_cache_dir
from medkd.data.manifest import ManifestRow
from medkd.errors import BadInput
from medkd.evaluation import evaluate
from medkd.runtime import Segmenter, wrap_module
from medkd.zoo import create_model, get_spec, load_model, save_model_artifact, trained_preprocessing
from medkd.zoo.artifact import artifact_model_ref

Method = Literal["decoupled", "kd-sam", "sam2unet", "prompt-loop"]
METHODS = ("decoupled", "kd-sam", "sam2unet", "prompt-loop")
PHASE_KIND = "distill-phase"


@dataclass
class DistillConfig:
    """What ``medkd distill`` does; recipes (``recipes/*.yaml``, section ``distill``) and flags fill it."""

    teacher: str
    student: str
    method: Method = "decoupled"
    teacher_checkpoint: str | None = None
    teacher_kwargs: dict = field(default_factory=dict)
    student_kwargs: dict = field(default_factory=dict)
    crop: Literal["none", "box"] = "none"
    datasets: list[str] | None = None
    cache_dir: str | None = None
    cache_shard_mb: float = 256.0
    fill_batch_size: int = 4
    val_objects: int = 200
    max_objects_per_dataset: int | None = None
    balance_datasets: bool = False
    teacher_bf16: bool = False
    # decoupled / kd-sam: optional decoder fine-tuning on ground truth, guarded by validation DSC
    decoder_steps: int = 0
    decoder_lr: float = 1e-5
    decoder_bce_weight: float = 1.0
    finetune_encoder: bool = False
    # kd-sam
    perceptual_weight: float = 0.0
    perceptual_network: str = "teacher"
    perceptual_blocks: int = 2
    # sam2unet
    temperature: float = 2.0
    soft_weight: float = 1.0
    gt_weight: float = 1.0
    # prompt-loop
    refinements: int = 2
    box_fraction: float = 0.5
    train: TrainConfig = field(default_factory=TrainConfig)


def default_teacher_cache() -> Path:
    """``teacher-targets`` beside the preprocessing cache (``$MEDKD_CACHE_DIR`` etc.)."""
    return default_cache_dir().parent / "teacher-targets"


def _sampled(rows: list[ManifestRow], count: int) -> list[ManifestRow]:
    return rows[:: max(1, len(rows) // count)] if rows and count > 0 else []


def capped_per_dataset(rows: list[ManifestRow], limit: int | None) -> list[ManifestRow]:
    """At most ``limit`` rows of each dataset, evenly spaced through it (all rows when ``None``)."""
    if limit is None:
        return rows
    by_dataset: dict[str, list[ManifestRow]] = {}
    for row in rows:
        by_dataset.setdefault(row.dataset, []).append(row)
    return [row for group in by_dataset.values() for row in _sampled(group, limit)[:limit]]


def _val_dsc(summary: dict[str, Any] | None) -> float | None:
    return None if summary is None else summary["overall"]["dsc"]["mean"]


class _Run:
    """State shared by the phases of one distillation run."""

    def __init__(self, config: DistillConfig, data: Path, out: Path, world: World, resume: bool) -> None:
        self.config, self.data, self.out, self.world, self.resume = config, data, out, world, resume
        self.manifest = load_manifest(data)
        self.loader = RowLoader(self.manifest, ArrayCache(default_cache_dir()))
        self.train_rows = capped_per_dataset(self.manifest.select("train", config.datasets), config.max_objects_per_dataset)
        self.val_rows = _sampled(self.manifest.select("val", config.datasets), config.val_objects)
        if not self.train_rows:
            raise BadInput(f"{data} has no training objects")
        self.metrics: dict[str, Any] = {"train_items": len(self.train_rows), "train_seconds_this_session": {}}

    def train(self, phase: str, task: Any, dataset: Any, train: TrainConfig, description: str) -> Trainer:
        run_dir = self.out / phase
        run_dir.mkdir(parents=True, exist_ok=True)
        weights = dataset_balancing_weights([row.dataset for row in self.train_rows]) if self.config.balance_datasets else None
        trainer = Trainer(task, dataset, train, run_dir, self.world, sample_weights=weights)
        started = time.monotonic()
        trainer.run(resume=self.resume, description=description)
        self.metrics["train_seconds_this_session"][phase] = round(time.monotonic() - started, 1)
        return trainer

    def finished_phase(self, phase: str, model: nn.Module) -> bool:
        """Load a phase's saved student into ``model`` if that phase completed in an earlier session."""
        directory = self.out / phase
        if not (directory / "manifest.json").exists():
            return False
        read_manifest(directory, kind=PHASE_KIND)
        model.load_state_dict(load_model(directory).state_dict())
        return True

    def save_phase(self, phase: str, trainer: Trainer, model: nn.Module, name: str, kwargs: dict) -> None:
        if self.world.is_main:
            save_model_artifact(model, self.out / phase, name=name, kind=PHASE_KIND, model_kwargs=kwargs)
        trainer.finish()

    def validate(self, model: nn.Module, name: str, kwargs: dict, teacher: Segmenter | None = None) -> dict[str, Any] | None:
        if not self.world.is_main or not self.val_rows:
            return None
        preprocessing = trained_preprocessing(name, kwargs, self.config.crop)
        result = evaluate(wrap_module(model, name, preprocessing, self.world.device), self.val_rows, self.loader, teacher=teacher)
        return result.summary


def _build_teacher(config: DistillConfig, device: torch.device) -> nn.Module:
    if get_spec(config.teacher).family != "sam":
        raise BadInput(f"distillation needs a SAM-family teacher, not '{config.teacher}'")
    teacher = create_model(config.teacher, checkpoint=config.teacher_checkpoint, **config.teacher_kwargs)
    return teacher.requires_grad_(False).eval().to(device)


def _student_kwargs(config: DistillConfig, teacher: nn.Module) -> dict[str, Any]:
    """The recipe's student arguments, plus the teacher's embedding grid where the builder takes one."""
    kwargs = dict(config.student_kwargs)
    if "embedding_grid" in inspect.signature(get_spec(config.student).builder).parameters:
        kwargs.setdefault("embedding_grid", embedding_grid(teacher))
    return kwargs


def run_distill(config: DistillConfig, data: Path, out: Path, world: World, resume: bool = False) -> dict[str, Any]:
    """Fill the teacher cache, train the student, validate, and write its artifact into ``out``."""
    run = _Run(config, data, out, world, resume)
    torch.manual_seed(config.train.seed)  # teacher random init (stand-ins) and student init
    teacher = _build_teacher(config, world.device)
    identity = teacher_identity(config.teacher, config.teacher_checkpoint, config.teacher_kwargs, teacher)
    if config.teacher_bf16:  # bf16 targets differ from fp32 ones: never mix them under one key
        identity["precision"] = "bf16"
    target = "logits" if config.method == "sam2unet" else "embedding"
    teacher_preprocessing = trained_preprocessing(config.teacher, config.teacher_kwargs, config.crop, config.teacher_checkpoint)
    keys = TargetKeys.compute(run.train_rows, run.loader, identity, target, teacher_preprocessing)
    cache = EmbeddingCache(config.cache_dir or default_teacher_cache(), int(config.cache_shard_mb * (1 << 20)))
    teacher_items = ObjectDataset(run.train_rows, run.loader, teacher_preprocessing)
    run.metrics["cache"] = {"directory": str(cache.directory), **fill_cache(cache, teacher, target, teacher_items, keys, world, config.fill_batch_size, config.teacher_bf16)}

    student, name, kwargs = _train_student(run, teacher, keys, cache)

    teacher_segmenter = wrap_module(teacher, config.teacher, teacher_preprocessing, world.device) if world.is_main and run.val_rows else None
    run.metrics["val"] = run.validate(student, name, kwargs, teacher_segmenter)
    if world.is_main:
        inputs = [ArtifactInput(kind="data-manifest", path=str(data), sha256=sha256_file(data))]
        if config.teacher_checkpoint:
            source = Path(config.teacher_checkpoint)
            inputs.append(as_input(source) if source.is_dir() else ArtifactInput("checkpoint", str(source), sha256_file(source)))
        if config.method == "prompt-loop":
            inputs.append(as_input(config.student))
        save_model_artifact(
            student.cpu(),
            out,
            name=name,
            kind="student",
            model_kwargs=kwargs,
            config={"distill": asdict(config)},
            inputs=inputs,
            metrics=run.metrics,
            preprocessing=trained_preprocessing(name, kwargs, config.crop),
        )
    return run.metrics


def _cached_items(run: _Run, name: str, kwargs: dict, keys: TargetKeys, cache: EmbeddingCache) -> CachedTargetDataset:
    items = ObjectDataset(run.train_rows, run.loader, trained_preprocessing(name, kwargs, run.config.crop))
    return CachedTargetDataset(items, keys, cache, run.config.train.seed, run.config.box_fraction)


def _train_student(run: _Run, teacher: nn.Module, keys: TargetKeys, cache: EmbeddingCache) -> tuple[nn.Module, str, dict]:
    config = run.config
    if config.method == "sam2unet":
        student = create_model(config.student, **config.student_kwargs)
        if get_spec(config.student).family != "unet":
            raise BadInput(f"sam2unet trains a U-Net student, not '{config.student}'")
        if not run.finished_phase("kd", student):
            task = UNetKDTask(student, config.temperature, config.soft_weight, config.gt_weight)
            dataset = _cached_items(run, config.student, config.student_kwargs, keys, cache)
            trainer = run.train("kd", task, dataset, config.train, f"sam2unet {config.teacher} -> {config.student}")
            run.save_phase("kd", trainer, student, config.student, config.student_kwargs)
        return student.eval(), config.student, config.student_kwargs

    if config.method == "prompt-loop":
        if not Path(config.student).is_dir():
            raise BadInput("prompt-loop starts from a decoupled student: give its artifact directory as --student")
        name, kwargs, _, _ = artifact_model_ref(config.student)
        student = load_model(config.student)
        if embedding_grid(student) != embedding_grid(teacher):
            raise BadInput(f"{config.student} does not pair with {config.teacher}: embedding grids differ")
        size = int(student.image_encoder.img_size)
        if not run.finished_phase("kd", student):
            task = PromptLoopTask(student, PromptHead(teacher, size), config.refinements)
            trainer = run.train("kd", task, _cached_items(run, name, kwargs, keys, cache), config.train, f"prompt-loop {config.teacher} -> {name}")
            run.save_phase("kd", trainer, student, name, kwargs)
        return student.eval(), name, kwargs

    kwargs = _student_kwargs(config, teacher)
    student = copy_prompt_path(create_model(config.student, **kwargs), teacher)
    size = int(student.image_encoder.img_size)
    if not run.finished_phase("kd", student):
        features = None
        if config.perceptual_weight > 0:
            if config.perceptual_network == "teacher":
                features = teacher_features(teacher, config.perceptual_blocks)
            else:
                features = vgg_features(config.perceptual_network, size)
        task = EncoderKDTask(student, features, config.perceptual_weight)
        trainer = run.train("kd", task, _cached_items(run, config.student, kwargs, keys, cache), config.train, f"{config.method} {config.teacher} -> {config.student}")
        run.save_phase("kd", trainer, student, config.student, kwargs)
    if config.decoder_steps > 0:
        _finetune_decoder(run, student, kwargs)
    return student.eval(), config.student, kwargs


def _finetune_decoder(run: _Run, student: nn.Module, kwargs: dict) -> None:
    """Phase 2 with the guard of pitfall 10: keep the frozen decoder unless validation DSC holds."""
    config = run.config
    guarded = student if config.finetune_encoder else student.mask_decoder
    frozen_state = {k: v.clone() for k, v in guarded.state_dict().items()}
    frozen = _val_dsc(run.validate(student, config.student, kwargs))
    if not run.finished_phase("decoder", student):
        preprocessing = trained_preprocessing(config.student, kwargs, config.crop)
        dataset = ObjectDataset(run.train_rows, run.loader, preprocessing, train=True, seed=config.train.seed)
        warmup = min(config.train.warmup_steps, max(1, config.decoder_steps // 10))
        train = replace(config.train, steps=config.decoder_steps, lr=config.decoder_lr, warmup_steps=warmup)
        task = DecoderTask(student, config.decoder_bce_weight, config.finetune_encoder)
        description = "encoder + decoder fine-tuning" if config.finetune_encoder else "decoder fine-tuning"
        trainer = run.train("decoder", task, dataset, train, description)
        run.save_phase("decoder", trainer, student, config.student, kwargs)
    finetuned = _val_dsc(run.validate(student, config.student, kwargs))
    keep = keep_finetuned_decoder(frozen, finetuned)
    if not keep:
        guarded.load_state_dict(frozen_state)
    run.metrics["decoder_guard"] = {"val_dsc_frozen": frozen, "val_dsc_finetuned": finetuned, "kept": "finetuned" if keep else "frozen"}
