"""Joining and leaving torchrun's process group for extraction and fine-tuning (which shard a process is:
core/shards.py).

Extraction work is divided by chunk: chunk k belongs to shard k mod N, so every shard writes its own
chunk files and the assembled cache is the same as a single process would write (bit for bit at the
same torch thread count: torchrun gives each rank one thread, and bf16 CPU sums depend on it).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from clipforensics.core.shards import Shard


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
