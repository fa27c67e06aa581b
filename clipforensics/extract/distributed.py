"""Which part of the work this process does: one process, a torchrun rank, or a `--shard K/N` job.

Extraction work is divided by chunk: chunk k belongs to shard k mod N, so every shard writes its own
chunk files and the assembled cache is the same as a single process would write (bit for bit at the
same torch thread count: torchrun gives each rank one thread, and bf16 CPU sums depend on it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from clipforensics.core.errors import UserError


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1
    torchrun: bool = False

    @property
    def single(self) -> bool:
        return self.world == 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def owns(self, chunk: int) -> bool:
        return chunk % self.world == self.rank

    def barrier(self) -> None:
        if self.torchrun:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (the value itself in a single process)."""
        if not self.torchrun:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def parse_shard(text: str) -> Shard:
    """`K/N` with 0 <= K < N, as SLURM array jobs would pass `$SLURM_ARRAY_TASK_ID/$N`."""
    try:
        k, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise UserError(f"--shard expects K/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= k < n:
        raise UserError(f"--shard {text}: K must be in 0..N-1")
    return Shard(k, n)


def current_shard(shard: str | None) -> Shard:
    """torchrun's environment wins (it sets WORLD_SIZE/RANK); else `--shard`; else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        if shard:
            raise UserError("--shard cannot be combined with torchrun (ranks already divide the work)")
        return Shard(int(os.environ["RANK"]), world, torchrun=True)
    return parse_shard(shard) if shard else Shard()


def init_process_group(shard: Shard, device: str) -> str:
    """Join torchrun's group (NCCL on GPUs, gloo on CPU); return the device this rank should use."""
    if not shard.torchrun:
        return device
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def finish(shard: Shard) -> None:
    if shard.torchrun and dist.is_initialized():
        dist.destroy_process_group()
