"""Which videos a `--shard K/N` job (or torchrun rank K of N) prepares, where it writes them, and its records.

Videos are dealt round-robin in input order (class, then name): video i belongs to shard i mod N, so every video
is in exactly one shard, shard sizes differ by at most one and each shard holds a share of every class. K counts
from 0 as extraction's `--shard` does (`$SLURM_ARRAY_TASK_ID/N` with `--array=0-(N-1)`).

A shard writes a data root of its own beside --out, as extraction's parts sit beside the cache:

    DATA_ROOT.shards/shard-K-of-N/<Class>/<video>/*.png   frames, each video renamed into place when complete
                                  .parts/                 each video's rows, as in the data root
                                  shard.json              what the shard is made with, before any video
                                  failed_videos.csv       the videos that failed in its last run
                                  shard.done.json         written last; removed when the shard (re)starts

Beside --out, hence on the same file system: the merge moves each video's folder into the data root by renaming it.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from clipforensics.core.errors import UserError
from clipforensics.core.identity import Identity
from clipforensics.core.shards import Shard
from clipforensics.data.layouts import VideoFile
from clipforensics.frames.recipe import crop_identity
from clipforensics.frames.settings import FrameSettings

T = TypeVar("T")
SUFFIX = ".shards"
STAGE = "prepare_frames --shard"
RECORD = "shard.json"
DONE = "shard.done.json"
FAILED = "failed_videos.csv"
NAME = re.compile(r"^shard-(\d+)-of-(\d+)$")
WAIT = timedelta(days=7)
"""How long torchrun's ranks wait for the slowest one before the merge (gloo's default, 30 min, is shorter than
the gap between shards of hours of video)."""


def shards_root(out: str | os.PathLike) -> Path:
    """`DATA_ROOT.shards`, beside the data root."""
    out = Path(os.path.abspath(out))
    return out.with_name(out.name + SUFFIX)


def shard_dir(out: str | os.PathLike, shard: Shard) -> Path:
    return shards_root(out) / shard.name


def found(out: str | os.PathLike) -> dict[Shard, Path]:
    """The shard folders beside `out` that a shard started in (its record written), by shard."""
    root = shards_root(out)
    matches = [(NAME.match(p.name), p) for p in sorted(root.iterdir())] if root.is_dir() else []
    return {Shard(int(m[1]), int(m[2])): p for m, p in matches
            if m and int(m[1]) < int(m[2]) and (p / RECORD).is_file()}


def videos_digest(videos: list[VideoFile]) -> str:
    """The input list a shard was dealt from: its names and sources, in order."""
    text = "".join(f"{v.class_name}/{v.video}\t{v.source}\n" for v in videos)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def shard_identity(settings: FrameSettings, videos: list[VideoFile]) -> Identity:
    """What every shard of one run, and its merge, must agree on: the crop recipe and the videos dealt out."""
    inputs: dict[str, Any] = {"videos": videos_digest(videos), "video_count": len(videos),
                              "classes": list(settings.classes), "max_videos": settings.max_videos}
    return crop_identity(settings, inputs)


def join(shard: Shard) -> None:
    """Under torchrun: join the ranks' process group before any work (gloo: the ranks need no GPU and share
    nothing but a barrier). torch is imported here and in core/shards.py's barrier and leave only, so
    prepare_frames.py never loads it outside torchrun."""
    if not shard.torchrun:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        try:
            dist.init_process_group(backend="gloo", timeout=WAIT)
        except ValueError as exc:  # RANK and WORLD_SIZE set by hand, without torchrun's rendezvous
            raise UserError(f"cannot join the other ranks ({exc}); run under torchrun, or use --shard K/N") from None
