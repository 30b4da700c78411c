"""One site of federated adaptation: its training objects, and a round of local training that starts
from the global trainable parameters and returns the site's own (Flower carries them, see
``medkd.distill.federated``; nothing here imports it).

A site is a manifest (its own, on a real deployment) narrowed by a site spec: ``""`` (all of it),
``dataset:NAME`` (one dataset) or ``subjects:I/N`` (the I-th of N groups of subjects, dealt in turn
from the sorted subjects, so no subject is at two sites).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from medkd.distill.adapt import AdaptConfig, AdaptTask, prepare_teacher, training_task
from medkd.distill.distributed import World
from medkd.distill.selection import capped_per_dataset, dataset_balancing_weights
from medkd.distill.trainer import Trainer, read_log
from torch import nn

from medkd.data import DataManifest, ManifestRow, RowLoader, load_manifest
from medkd.data.cache import ArrayCache, default_cache_dir
from medkd.errors import BadInput
from medkd.zoo import trained_preprocessing


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (LoRA, adapters, the decoder), by name: all a site exchanges."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Set ``model``'s trainable parameters to ``state`` (exactly those names, no more, no fewer)."""
    parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(state) != set(parameters):
        unexpected = sorted(set(state) ^ set(parameters))
        raise BadInput(f"the global parameters do not match this site's trainable ones (e.g. '{unexpected[0]}')")
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value.to(parameters[name].device, parameters[name].dtype))


def site_rows(rows: list[ManifestRow], spec: str) -> list[ManifestRow]:
    """The rows of ``rows`` that belong to the site ``spec`` (see the module's docstring)."""
    if not spec:
        return rows
    kind, _, value = spec.partition(":")
    if kind == "dataset" and value:
        return [row for row in rows if row.dataset == value]
    if kind == "subjects":
        index, _, count = value.partition("/")
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise BadInput(f"site '{spec}': expected subjects:I/N with 0 <= I < N")
        subjects = sorted({(row.dataset, row.subject) for row in rows})
        mine = set(subjects[int(index) :: int(count)])
        return [row for row in rows if (row.dataset, row.subject) in mine]
    raise BadInput(f"unknown site '{spec}' (expected dataset:NAME or subjects:I/N)")


def simulated_sites(manifest: DataManifest, config: AdaptConfig) -> dict[str, str]:
    """Site name -> site spec for ``config.federated.sites`` over one manifest (``dataset`` or ``subjects:N``)."""
    assert config.federated is not None
    how = config.federated.sites
    if how == "dataset":
        present = sorted({row.dataset for row in manifest.select("train", config.datasets)})
        return {name: f"dataset:{name}" for name in present}
    kind, _, count = how.partition(":")
    if kind == "subjects" and count.isdigit() and int(count) >= 1:
        return {f"subjects-{i}": f"subjects:{i}/{count}" for i in range(int(count))}
    raise BadInput(f"federated.sites: expected 'dataset' or 'subjects:N', got '{how}'")


class ProximalTask:
    """FedProx's local objective: the task's loss plus ``mu / 2 * ||w - w_global||^2`` over the
    trainable parameters, ``w_global`` being their values when the round began."""

    def __init__(self, task: AdaptTask, mu: float) -> None:
        self.task = task
        self.module = task.module
        self.mu = mu
        self.parameters = [p for p in task.module.parameters() if p.requires_grad]
        self.anchor = [p.detach().clone() for p in self.parameters]

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = self.task.loss(outputs, batch)
        distance = sum(((p.float() - a.float()) ** 2).sum() for p, a in zip(self.parameters, self.anchor))
        return loss + 0.5 * self.mu * distance, {**metrics, "proximal": float(distance.detach())}


class Site:
    """A site's teacher and training objects, trained one round at a time into ``work/round-<r>``."""

    def __init__(self, config: AdaptConfig, data: Path, spec: str, work: Path, world: World) -> None:
        manifest = load_manifest(data)
        loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
        rows = site_rows(capped_per_dataset(manifest.select("train", config.datasets), config.max_objects_per_dataset), spec)
        if not rows:
            raise BadInput(f"site '{spec or data}' has no training objects")
        self.config, self.work, self.world = config, Path(work), world
        torch.manual_seed(config.train.seed)  # the new weights' initialisation; the server's global values replace it
        self.sam = prepare_teacher(config)
        preprocessing = trained_preprocessing(config.teacher, config.model_kwargs, config.crop, config.checkpoint)
        self.dataset, self.task, self.cache_metrics = training_task(config, self.sam, rows, loader, preprocessing, world)
        self.weights = dataset_balancing_weights([row.dataset for row in rows]) if config.balance_datasets else None

    def train_round(self, state: dict[str, torch.Tensor], server_round: int, proximal_mu: float) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``config.train.steps`` local steps from the global ``state``: the site's new trainable
        parameters and its metrics (``num-examples``, the weight of its update in the mean)."""
        load_trainable(self.sam, state)
        task = ProximalTask(self.task, proximal_mu) if proximal_mu > 0 else self.task
        train = replace(self.config.train, seed=self.config.train.seed + server_round)  # a fresh draw each round
        run_dir = self.work / f"round-{server_round}"
        trainer = Trainer(task, self.dataset, train, run_dir, self.world, sample_weights=self.weights)
        trainer.run(description=f"round {server_round}: {self.config.teacher} ({self.config.method})")
        trainer.finish()
        losses = [record["loss"] for record in read_log(run_dir)]
        return trainable_state(self.sam), {"num-examples": len(self.dataset), "train-loss": sum(losses) / len(losses)}
