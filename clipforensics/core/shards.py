"""Which part of the work this process does: the whole of it, a `--shard K/N` job, or a torchrun rank.

One rule for every stage that divides its work (extraction by chunk, frame preparation by video): K counts from 0
(`$SLURM_ARRAY_TASK_ID/N` with `--array=0-(N-1)`), item i belongs to shard i mod N, and torchrun's environment
(WORLD_SIZE, RANK) wins over `--shard`. torch is imported only by a torchrun rank's barrier or broadcast, so a
stage that never runs under torchrun never loads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

from clipforensics.core.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard `rank` of `world` (0 of 1: the whole run in one process); `torchrun` when the ranks came from it."""

    rank: int = 0
    world: int = 1
    torchrun: bool = False

    @property
    def single(self) -> bool:
        return self.world == 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def name(self) -> str:
        return f"shard-{self.rank}-of-{self.world}"

    @property
    def shown(self) -> str:
        return f"{self.rank}/{self.world}"

    def owns(self, item: int) -> bool:
        """Whether item number `item` (a chunk, a video) is this shard's."""
        return item % self.world == self.rank

    def take(self, items: list[T]) -> list[T]:
        """This shard's share of `items`: every world-th one from its rank on."""
        return items[self.rank::self.world]

    def barrier(self) -> None:
        if self.torchrun:
            import torch.distributed as dist

            dist.barrier()

    def leave(self) -> None:
        """Leave torchrun's process group, where this process joined one (every stage's last step under torchrun)."""
        if self.torchrun:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (the value itself in a single process)."""
        if not self.torchrun:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def parse_shard(text: str) -> Shard:
    """`K/N` with 0 <= K < N."""
    try:
        k, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise UserError(f"--shard expects K/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= k < n:
        raise UserError(f"--shard {text}: K must be in 0..N-1")
    return Shard(k, n)


def current_shard(text: str | None) -> Shard:
    """torchrun's environment wins (it sets WORLD_SIZE and RANK); else `--shard`; else the whole run."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise UserError("WORLD_SIZE and RANK must be whole numbers (torchrun sets them)") from None
    if world > 1:
        if text:
            raise UserError("--shard cannot be combined with torchrun (ranks already divide the work)")
        if not 0 <= rank < world:
            raise UserError(f"RANK {rank} is not in 0..WORLD_SIZE-1 ({world - 1})")
        return Shard(rank, world, torchrun=True)
    return parse_shard(text) if text else Shard()
