"""The training engine shared by teacher adaptation and every distillation method.

Seeded, resumable (an atomic checkpoint every N steps and on Ctrl-C / SIGTERM; ``resume`` continues
from it, also after ``kill -9``), cosine schedule with linear warm-up, gradient clipping, optional
bf16 autocast, rich progress, TensorBoard scalars and a JSON-lines log, and DDP under ``torchrun``.
A task supplies the module to train (``forward(batch) -> outputs``) and the loss.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from medkd.distill.distributed import EpochOrder, World, barrier, mean_across_ranks
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from medkd.artifacts import atomic_path, remove_stale_temporaries
from medkd.errors import BadInput

STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"
# Settings that must not change when a run is resumed.
_RESUME_KEYS = ("steps", "batch_size", "lr", "weight_decay", "warmup_steps", "seed")


@dataclass
class TrainConfig:
    """Optimisation settings of one training run (``batch_size`` is per rank)."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    bf16: bool = False
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0


class TrainTask(Protocol):
    """What the engine trains: ``module(batch)`` gives outputs, ``loss`` turns them into a scalar."""

    module: nn.Module

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]: ...


def cosine_with_warmup(step: int, config: TrainConfig) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to ``min_lr_ratio``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (``torchrun`` stopping its workers, a job scheduler) like Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Trainer:
    """Runs ``config.steps`` optimisation steps of ``task`` over ``dataset`` into ``run_dir``.

    ``sample_weights`` (one per item) make each epoch a weighted draw instead of a permutation.
    """

    def __init__(
        self,
        task: TrainTask,
        dataset: Dataset,
        config: TrainConfig,
        run_dir: Path,
        world: World,
        sample_weights: torch.Tensor | None = None,
    ) -> None:
        self.task = task
        self.dataset = dataset
        self.sample_weights = sample_weights
        self.config = config
        self.run_dir = Path(run_dir)
        self.world = world
        self.bf16 = world.bf16(config.bf16)
        self.module = task.module.to(world.device)
        self.parameters = [p for p in self.module.parameters() if p.requires_grad]
        if not self.parameters:
            raise BadInput("nothing to train: every parameter is frozen")
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: cosine_with_warmup(s, config))
        self.step = 0
        self.batches_per_epoch = EpochOrder.batches_per_epoch(len(dataset), config.batch_size, world.size)
        if self.batches_per_epoch == 0:
            raise BadInput(
                f"{len(dataset)} training items are fewer than one global batch of "
                f"{config.batch_size * world.size}; lower the batch size"
            )

    # -- checkpoints --------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    def save_state(self) -> None:
        if self.world.is_main:
            state = {
                "step": self.step,
                "module": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "config": asdict(self.config),
            }
            with atomic_path(self.state_path) as tmp:
                torch.save(state, tmp)
        barrier(self.world)

    def load_state(self) -> None:
        state = torch.load(self.state_path, map_location=self.world.device, weights_only=True)
        changed = [key for key in _RESUME_KEYS if state["config"].get(key) != getattr(self.config, key)]
        if changed:
            raise BadInput(f"cannot resume {self.run_dir}: {', '.join(changed)} changed since the run started")
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"].cpu())
        self.step = int(state["step"])

    # -- the loop -----------------------------------------------------------------------------
    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            epoch, skip = divmod(self.step, self.batches_per_epoch)
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            order = EpochOrder(
                len(self.dataset), self.config.batch_size, self.world, self.config.seed, epoch, skip, self.sample_weights
            )
            loader = DataLoader(
                self.dataset, batch_size=self.config.batch_size, sampler=order, num_workers=self.config.num_workers
            )
            yield from loader

    def _train_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        batch = {k: v.to(self.world.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with torch.autocast(self.world.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            outputs = model(batch)
            loss, metrics = self.task.loss(outputs, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), **metrics}

    def run(self, resume: bool = False, description: str = "training") -> nn.Module:
        """Train to ``config.steps``; returns the trained module (unwrapped from DDP)."""
        if self.world.is_main:
            remove_stale_temporaries(self.run_dir)
        if self.state_path.exists():
            if not resume:
                raise BadInput(f"{self.run_dir} holds an unfinished run: pass --resume to continue it")
            self.load_state()
        else:
            torch.manual_seed(self.config.seed)
        model = DistributedDataParallel(self.module) if self.world.distributed else self.module
        model.train()
        writer = self._writer()
        started = time.monotonic()
        try:
            with _sigterm_as_interrupt(), self._progress(description) as (progress, task_id):
                batches = self._batches()
                while self.step < self.config.steps:
                    metrics = mean_across_ranks(self._train_step(model, next(batches)), self.world)
                    self.step += 1
                    self._log(metrics, writer, started)
                    if progress is not None:
                        progress.update(task_id, completed=self.step, loss=metrics["loss"])
                    if self.step % self.config.checkpoint_every == 0 and self.step < self.config.steps:
                        self.save_state()
        except KeyboardInterrupt:
            self.save_state()
            raise
        finally:
            if writer is not None:
                writer.close()
        return self.module

    def finish(self) -> None:
        """Remove the resumable state once the run's artifact has been written."""
        if self.world.is_main:
            self.state_path.unlink(missing_ok=True)
        barrier(self.world)

    # -- reporting ----------------------------------------------------------------------------
    def _writer(self):
        if not self.world.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step or None)

    def _log(self, metrics: dict[str, float], writer, started: float) -> None:
        if not self.world.is_main:
            return
        lr = self.scheduler.get_last_lr()[0]
        record = {"step": self.step, "lr": lr, "elapsed_s": round(time.monotonic() - started, 3), **metrics}
        with open(self.run_dir / LOG_FILE, "a") as log:
            log.write(json.dumps(record) + "\n")
        if writer is not None and (self.step % self.config.log_every == 0 or self.step == self.config.steps):
            for key, value in {**metrics, "lr": lr}.items():
                writer.add_scalar(f"train/{key}", value, self.step)

    @contextlib.contextmanager
    def _progress(self, description: str):
        if not self.world.is_main:
            yield None, None
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True)) as progress:
            task_id = progress.add_task(description, total=self.config.steps, completed=self.step, loss=float("nan"))
            yield progress, task_id


def read_log(run_dir: Path) -> list[dict[str, float]]:
    """The per-step log of a run, last record per step (a resumed run repeats some steps)."""
    path = Path(run_dir) / LOG_FILE
    records = {}
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by kill -9
                record = json.loads(line)
                records[record["step"]] = record
    return [records[step] for step in sorted(records)]
