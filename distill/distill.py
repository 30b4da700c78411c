"""``medkd distill``: a small student from a SAM-family teacher, by one of four methods.

- ``decoupled`` (MobileSAM / LiteMedSAM) and ``kd-sam`` (Patil et al. 2025): see ``medkd.distill.decoupled``.
- ``sam2unet`` (Shi et al. 2024): see ``medkd.distill.sam2unet``.
- ``prompt-loop`` (EdgeSAM phase 2), from a decoupled student artifact: see ``medkd.distill.prompt_loop``.

Every method first fills the teacher-target cache (``medkd.distill.embedding_cache``) for the training
objects, so the heavy teacher encoder runs once per image, never per epoch. Students see the images
through the teacher's preprocessing (normalisation, resize, crop) at their own input size, so that
their embedding grid lies on the teacher's. Training runs in phases, each in a sub-directory of the
output and resumable: ``kd/`` (distillation alone) and, with ``finetune_steps``, ``finetune/``
(ground truth, kept only when validation DSC does not drop). A finished phase leaves its student
there as a model artifact with its preprocessing, so a resumed run starts at the phase it was in and
``kd/`` can be evaluated on its own: what the teacher gave, beside what the labels added. The output
is a zoo model artifact of the student (``load_model``); SAM-family students are complete SAM state
dicts.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from medkd.distill.decoupled import (
    DecoderTask,
    EncoderKDTask,
    copy_prompt_path,
    embedding_grid,
    keep_finetuned,
)
from medkd.distill.distributed import World
from medkd.distill.embedding_cache import EmbeddingCache
from medkd.distill.inherit import inherit_encoder
from medkd.distill.perceptual import teacher_features, vgg_features
from medkd.distill.prompt_loop import PromptHead, PromptLoopTask
from medkd.distill.sam2unet import UNetKDTask
from medkd.distill.selection import capped_per_dataset, dataset_balancing_weights, sampled
from medkd.distill.teacher_targets import (
    CachedTargetDataset,
    TargetKeys,
    cached_targets,
    default_teacher_cache,
)
from medkd.distill.trainer import TrainConfig, Trainer
from torch import nn

from medkd.artifacts import ArtifactInput, as_input, read_manifest, sha256_file
from medkd.data import ObjectDataset, Preprocessing, RowLoader, load_manifest
from medkd.data.cache import ArrayCache, default_cache_dir
from medkd.errors import BadInput
from medkd.evaluation import evaluate
from medkd.evaluation.reference_masks import default_reference_dir
from medkd.runtime import Segmenter, wrap_module
from medkd.zoo import create_model, default_preprocessing, get_spec, load_model, model_preprocessing, save_model_artifact, trained_preprocessing
from medkd.zoo.artifact import architecture_kwargs, artifact_model_ref

Method = Literal["decoupled", "kd-sam", "sam2unet", "prompt-loop"]
METHODS = ("decoupled", "kd-sam", "sam2unet", "prompt-loop")
PHASE_KIND = "distill-phase"
KD_PHASE, FINETUNE_PHASE = "kd", "finetune"


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
    # decoupled / kd-sam: the student's encoder starts from the teacher's where weights fit
    init_from_teacher: bool = False
    # decoupled / kd-sam: weight of the mask term (student's masks against the teacher's, both
    # decoded by the teacher's decoder under the same box)
    mask_weight: float = 0.0
    # every method: optional fine-tuning on ground truth after distillation, guarded by validation
    # DSC (SAM students: the mask decoder, with finetune_encoder the image encoder too; U-Net: all)
    finetune_steps: int = 0
    finetune_lr: float = 1e-5
    finetune_bce_weight: float = 1.0
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


def _val_dsc(summary: dict[str, Any] | None) -> float | None:
    return None if summary is None else summary["overall"]["dsc"]["mean"]


def student_preprocessing(name: str, kwargs: dict[str, Any], teacher: Preprocessing) -> Preprocessing:
    """The teacher's normalisation, resize and crop at the student's own input size and grid."""
    own = default_preprocessing(name, kwargs)
    return replace(teacher, input_size=own.input_size, mask_size=own.mask_size, embedding_grid=own.embedding_grid)


class _Run:
    """State shared by the phases of one distillation run."""

    def __init__(self, config: DistillConfig, data: Path, out: Path, world: World, resume: bool) -> None:
        self.config, self.data, self.out, self.world, self.resume = config, data, out, world, resume
        self.manifest = load_manifest(data)
        self.loader = RowLoader(self.manifest, ArrayCache(default_cache_dir()))
        self.train_rows = capped_per_dataset(self.manifest.select("train", config.datasets), config.max_objects_per_dataset)
        self.val_rows = sampled(self.manifest.select("val", config.datasets), config.val_objects)
        if not self.train_rows:
            raise BadInput(f"{data} has no training objects")
        self.metrics: dict[str, Any] = {"train_items": len(self.train_rows), "train_seconds_this_session": {}}
        self.preprocessing: Preprocessing | None = None  # the student's, once it is known
        self.teacher_segmenter: Segmenter | None = None  # for agreement in validation

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
            save_model_artifact(
                model, self.out / phase, name=name, kind=PHASE_KIND, model_kwargs=kwargs, preprocessing=self.preprocessing
            )
        trainer.finish()

    def validate(self, model: nn.Module, name: str) -> dict[str, Any] | None:
        """Validation metrics of ``model``, with agreement to the teacher's masks."""
        if not self.world.is_main or not self.val_rows:
            return None
        segmenter = wrap_module(model, name, self.preprocessing, self.world.device)
        return evaluate(segmenter, self.val_rows, self.loader, teacher=self.teacher_segmenter, reference_dir=default_reference_dir()).summary

    def cached_items(self, keys: TargetKeys, cache: EmbeddingCache) -> CachedTargetDataset:
        items = ObjectDataset(self.train_rows, self.loader, self.preprocessing)
        return CachedTargetDataset(items, keys, cache, self.config.train.seed, self.config.box_fraction)


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
    target = "logits" if config.method == "sam2unet" else "embedding"
    teacher_preprocessing = trained_preprocessing(config.teacher, config.teacher_kwargs, config.crop, config.teacher_checkpoint)
    cache = EmbeddingCache(config.cache_dir or default_teacher_cache(), int(config.cache_shard_mb * (1 << 20)))
    architecture = architecture_kwargs(config.teacher, config.teacher_checkpoint, config.teacher_kwargs)
    keys, filled = cached_targets(
        teacher, config.teacher, architecture, target, run.train_rows, run.loader, teacher_preprocessing,
        cache, world, config.fill_batch_size, config.teacher_bf16,
    )  # fmt: skip
    run.metrics["cache"] = {"directory": str(cache.directory), **filled}
    if world.is_main and run.val_rows:
        run.teacher_segmenter = wrap_module(teacher, config.teacher, teacher_preprocessing, world.device)

    student, name, kwargs = _train_student(run, teacher, teacher_preprocessing, keys, cache)

    run.metrics["val"] = run.validate(student, name)
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
            preprocessing=run.preprocessing,
        )
    return run.metrics


def _train_student(
    run: _Run, teacher: nn.Module, teacher_preprocessing: Preprocessing, keys: TargetKeys, cache: EmbeddingCache
) -> tuple[nn.Module, str, dict]:
    config = run.config
    if config.method == "sam2unet":
        name, kwargs = config.student, config.student_kwargs
        student = create_model(name, **kwargs)
        if get_spec(name).family != "unet":
            raise BadInput(f"sam2unet trains a U-Net student, not '{name}'")
        run.preprocessing = student_preprocessing(name, kwargs, teacher_preprocessing)
        if not run.finished_phase(KD_PHASE, student):
            task = UNetKDTask(student, config.temperature, config.soft_weight, config.gt_weight)
            trainer = run.train(KD_PHASE, task, run.cached_items(keys, cache), config.train, f"sam2unet {config.teacher} -> {name}")
            run.save_phase(KD_PHASE, trainer, student, name, kwargs)
    elif config.method == "prompt-loop":
        if not Path(config.student).is_dir():
            raise BadInput("prompt-loop starts from a decoupled student: give its artifact directory as --student")
        name, kwargs, _, _ = artifact_model_ref(config.student)
        student = load_model(config.student)
        if embedding_grid(student) != embedding_grid(teacher):
            raise BadInput(f"{config.student} does not pair with {config.teacher}: embedding grids differ")
        run.preprocessing = replace(model_preprocessing(config.student), crop=config.crop)
        size = int(student.image_encoder.img_size)
        if not run.finished_phase(KD_PHASE, student):
            task = PromptLoopTask(student, PromptHead(teacher, size), config.refinements)
            trainer = run.train(KD_PHASE, task, run.cached_items(keys, cache), config.train, f"prompt-loop {config.teacher} -> {name}")
            run.save_phase(KD_PHASE, trainer, student, name, kwargs)
    else:
        name, kwargs = config.student, _student_kwargs(config, teacher)
        student = copy_prompt_path(create_model(name, **kwargs), teacher)
        run.preprocessing = student_preprocessing(name, kwargs, teacher_preprocessing)
        if config.init_from_teacher:
            run.metrics["inherited"] = inherit_encoder(student, teacher)
        if not run.finished_phase(KD_PHASE, student):
            task = EncoderKDTask(student, _feature_network(config, teacher, run.preprocessing.input_size), config.perceptual_weight, config.mask_weight)
            trainer = run.train(KD_PHASE, task, run.cached_items(keys, cache), config.train, f"{config.method} {config.teacher} -> {name}")
            run.save_phase(KD_PHASE, trainer, student, name, kwargs)
    if config.finetune_steps > 0:
        _finetune(run, student, name, kwargs, keys, cache)
    return student.eval(), name, kwargs


def _feature_network(config: DistillConfig, teacher: nn.Module, size: int) -> Any:
    if config.perceptual_weight <= 0:
        return None
    if config.perceptual_network == "teacher":
        return teacher_features(teacher, config.perceptual_blocks)
    return vgg_features(config.perceptual_network, size)


def _finetune(run: _Run, student: nn.Module, name: str, kwargs: dict, keys: TargetKeys, cache: EmbeddingCache) -> None:
    """Ground-truth fine-tuning with the guard of pitfall 10: keep the distilled model unless
    validation DSC holds. The validation of the distilled model is recorded as ``val_kd``."""
    config = run.config
    unet = config.method == "sam2unet"
    guarded = student if unet or config.finetune_encoder else student.mask_decoder
    distilled_state = {k: v.clone() for k, v in guarded.state_dict().items()}
    run.metrics["val_kd"] = run.validate(student, name)
    if not run.finished_phase(FINETUNE_PHASE, student):
        warmup = min(config.train.warmup_steps, max(1, config.finetune_steps // 10))
        train = replace(config.train, steps=config.finetune_steps, lr=config.finetune_lr, warmup_steps=warmup)
        if unet:
            task: Any = UNetKDTask(student, config.temperature, soft_weight=0.0, gt_weight=1.0)
            dataset: Any = run.cached_items(keys, cache)
            description = "U-Net fine-tuning on ground truth"
        else:
            task = DecoderTask(student, config.finetune_bce_weight, config.finetune_encoder)
            dataset = ObjectDataset(run.train_rows, run.loader, run.preprocessing, train=True, seed=config.train.seed)
            description = "encoder + decoder fine-tuning" if config.finetune_encoder else "decoder fine-tuning"
        trainer = run.train(FINETUNE_PHASE, task, dataset, train, description)
        run.save_phase(FINETUNE_PHASE, trainer, student, name, kwargs)
    distilled = _val_dsc(run.metrics["val_kd"])
    finetuned = _val_dsc(run.validate(student, name))
    keep = keep_finetuned(distilled, finetuned)
    if not keep:
        guarded.load_state_dict(distilled_state)
    run.metrics["finetune_guard"] = {"val_dsc_distilled": distilled, "val_dsc_finetuned": finetuned, "kept": "finetuned" if keep else "distilled"}
