"""PyTorch's own scale-out: ``torchrun`` + DDP (gloo on CPU, NCCL on GPU), and rank-sharded order."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from medkd.errors import MedkdWarning


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (1 rank when not under ``torchrun``)."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def bf16(self, requested: bool) -> bool:
        """Whether bf16 autocast is used when ``requested``: not on a CPU without oneDNN's bf16
        instructions (AVX2 only), where it is emulated tens of times slower than fp32 (a warning says so)."""
        if not requested or self.device.type != "cpu" or torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return requested
        warnings.warn("this CPU has no bf16 instructions (AVX2 only): bf16 autocast falls back to fp32", MedkdWarning, stacklevel=2)
        return False


def init_world() -> World:
    """Join the process group that ``torchrun`` describes through its environment variables."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    rank = int(os.environ["RANK"])
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return World(rank=rank, size=size, device=device)


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_across_ranks(values: dict[str, float], world: World) -> dict[str, float]:
    """Average scalar metrics over ranks (identity on one rank)."""
    if not world.distributed or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor)
    return {k: float(v) / world.size for k, v in zip(keys, tensor.tolist())}


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


class EpochOrder(Sampler[int]):
    """Shuffled order for one epoch, fixed by (seed, epoch), sharded by rank, resumable mid-epoch.

    Rank ``r`` takes every ``size``-th index starting at ``r``, so with per-rank batch ``b`` the
    ranks' ``k``-th batches together hold exactly the single-process ``k``-th batch of size
    ``b * size``. The order is cut to whole global batches; ``skip`` drops batches already trained.
    With ``weights``, the epoch draws ``length`` indices with replacement in proportion to them
    (e.g. to balance datasets of very different sizes) instead of a permutation.
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        world: World,
        seed: int,
        epoch: int,
        skip: int = 0,
        weights: torch.Tensor | None = None,
    ) -> None:
        self.length = length
        self.batch_size = batch_size
        self.world = world
        self.seed = seed
        self.epoch = epoch
        self.skip = skip
        self.weights = weights

    @staticmethod
    def batches_per_epoch(length: int, batch_size: int, world_size: int) -> int:
        return length // (batch_size * world_size)

    def _indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = torch.multinomial(self.weights, self.length, replacement=True, generator=generator).tolist()
        batches = self.batches_per_epoch(self.length, self.batch_size, self.world.size)
        order = order[: batches * self.batch_size * self.world.size]
        return order[self.world.rank :: self.world.size][self.skip * self.batch_size :]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())
