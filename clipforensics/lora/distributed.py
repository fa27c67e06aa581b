"""The LoRA stage on several processes: torchrun ranks training one model with DistributedDataParallel.

Under `torchrun --nproc_per_node=N finetune_lora.py ...` every rank trains on its share of each global batch
(`--batch-size` stays the global batch) and rank 0 alone writes (run folder, checkpoint, log, adapter, scores,
re-extracted caches) while the others wait for it. Joining torchrun's group (NCCL on GPUs, gloo on the CPU) is
extraction's (`extract.distributed`); this module adds what training needs beyond it: each rank's share of a
batch and the weight that makes DDP's gradient the full batch's, sums over ranks, and a gloo group without a
short timeout for waiting on rank 0 (NCCL's default of minutes is shorter than a re-extraction).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from clipforensics.core.shards import Shard, current_shard
from clipforensics.extract.distributed import init_process_group

T = TypeVar("T")
WAIT_TIMEOUT = timedelta(days=7)
"""How long the other ranks wait for rank 0's writing (a re-extraction of a large data root takes hours)."""


class Share(NamedTuple):
    """One rank's part of one global batch: positions in the epoch order, how many images it counts, and the weight
    of its mean loss."""

    positions: list[int]
    count: int
    weight: float


@dataclass(frozen=True)
class Ranks:
    """The processes training one model: one process (the default) or torchrun's ranks."""

    shard: Shard = field(default_factory=Shard)
    group: Any = None  # the gloo group for waiting and small messages; None in one process
    device: str = "auto"

    @property
    def torchrun(self) -> bool:
        return self.shard.torchrun

    @property
    def leader(self) -> bool:
        return self.shard.leader

    @property
    def world(self) -> int:
        return self.shard.world

    def batch_shares(self, n: int, batch_size: int) -> list[Share]:
        """This rank's share of every global batch of an epoch of `n` images: contiguous, sizes differing by one.

        The weight share * world / batch makes DDP's average of the ranks' gradients the full batch's mean
        gradient, however unevenly the batch divides (one process: weight 1). A rank whose share of a last batch
        is empty (fewer images than ranks) still steps on the batch's first image at weight 0: every rank must take
        part in every gradient reduction.
        """
        shares = []
        for start in range(0, n, batch_size):
            size, rank = min(batch_size, n - start), self.shard.rank
            part = range(start + rank * size // self.world, start + (rank + 1) * size // self.world)
            shares.append(Share(list(part) or [start], len(part), len(part) * self.world / size))
        return shares

    def wrap(self, module: nn.Module) -> nn.Module:
        """`module` under DistributedDataParallel on torchrun's ranks (it starts from rank 0's tensors)."""
        if not self.torchrun:
            return module
        device = next(module.parameters()).device
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def total(self, *values: float) -> tuple[float, ...]:
        """Each value summed over the ranks (in float64)."""
        if not self.torchrun:
            return values
        summed = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(summed, group=self.group)
        return tuple(summed.tolist())

    def broadcast(self, value: T | None) -> T:
        """Rank 0's `value` on every rank (picklable, CPU tensors only)."""
        if not self.torchrun:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def leader_alone(self, work: Callable[[], T]) -> T:
        """`work` on rank 0 only, as one process does it, while the others wait; every rank gets its result.

        Inside `work` rank 0 is one process: extraction reads torchrun's WORLD_SIZE and would wait for ranks
        that are not extracting.
        """
        if not self.torchrun:
            return work()
        result = None
        if self.leader:
            with _one_process():
                result = work()
        return self.broadcast(result)


_JOINED: list[Ranks] = []


def current_ranks() -> Ranks:
    """The ranks of the stage now running (`joined`); one process outside it."""
    return _JOINED[-1] if _JOINED else Ranks()


@contextlib.contextmanager
def _one_process() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in ("WORLD_SIZE", "RANK")}
    os.environ.update(WORLD_SIZE="1", RANK="0")
    _JOINED.append(Ranks())
    try:
        yield
    finally:
        _JOINED.pop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def joined(device: str) -> Iterator[Ranks]:
    """Join torchrun's group for one stage (a no-op in one process) and leave it after; `device` becomes the
    rank's own GPU on CUDA."""
    shard = current_shard(None)
    ranks = Ranks(shard, None, init_process_group(shard, device))
    if shard.torchrun:
        ranks = Ranks(shard, dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT), ranks.device)
    _JOINED.append(ranks)
    try:
        yield ranks
    finally:
        _JOINED.pop()
        shard.leave()
