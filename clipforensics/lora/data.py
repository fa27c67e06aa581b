"""The LoRA stage's training data: labelled image files, class-balanced epochs, light augmentation, loaders.

With `--pair-batches` an epoch's order puts a real frame and a fake frame made from the same video next to each
other, and a pair never across two batches where a single image can close the batch instead. GenD
(yermandy/GenD, WACV 2026) reports training on paired real/fake data from the same source video as essential; its
published code pairs at the level of the training set (`src/exp/wacv_rebuttal_paired_unpaired.py` trains on
"paired" file lists, `DeepfakeDataset(load_pairs=...)` accepts but never reads the flag) and draws batches with a
plain shuffle, so the batch-level pairing here is this tool's own.

Everything random in epoch e (the image order, each image's augmentation, the DataLoader's worker seeds, LoRA
dropout) is drawn from generators seeded by (seed, e), so an epoch is the same whether the run started at epoch 1
or resumed after a crash, and training leaves torch's global random stream as it found it.
"""

from __future__ import annotations

import functools
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from clipforensics.core.errors import UserError
from clipforensics.data.groups import video_ids
from clipforensics.data.images import load_rgb
from clipforensics.lora.settings import LoraSettings

ORDER_STREAM, AUGMENT_STREAM = 0, 1
CROP_RATIO = (0.9, 1.1)
JPEG_MAX_QUALITY = 95


@dataclass(frozen=True)
class LabelledImages:
    """Image files of some manifest rows, with their labels (and, for paired batches, their source videos)."""

    root: Path
    paths: list[str]
    labels: np.ndarray
    sources: np.ndarray | None = None

    @classmethod
    def of(cls, root: str | Path, rows: pd.DataFrame, sources: bool = False) -> "LabelledImages":
        return cls(Path(root), rows["path"].tolist(), rows["label"].to_numpy(np.int64),
                   source_videos(rows) if sources else None)

    def __len__(self) -> int:
        return len(self.paths)


def epoch_rng(seed: int, epoch: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, stream, *more])


def epoch_seed(seed: int, epoch: int, *more: int) -> int:
    """torch's seed for one epoch: the DataLoader's generator (worker seeds) and, inside the epoch, LoRA dropout
    (`more`: the rank, on ranks other than 0)."""
    return int(np.random.SeedSequence([seed, epoch, *more]).generate_state(1)[0])


def source_videos(rows: pd.DataFrame) -> np.ndarray:
    """Each frame's source video: a real video's own id; a fake's target, the real video whose frames it re-renders
    (FF++ `target_source`, `data.groups.video_ids`), or the fake's own id where its name records none."""
    videos = rows.drop_duplicates("video")
    first = {video: ids[0] for video, ids in zip(videos["video"], video_ids(videos))}
    return rows["video"].map(first).to_numpy(object)


def _balanced_picks(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Half real, half fake image indices (the smaller class cycled without replacement), each class in random order."""
    n = len(labels)
    picks = []
    for label, need in ((0, n // 2), (1, n - n // 2)):
        members = np.flatnonzero(labels == label)
        cycles = -(-need // len(members))
        picks.append(np.concatenate([rng.permutation(members) for _ in range(cycles)])[:need])
    return picks


def epoch_order(labels: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """One epoch's image order: half real, half fake (the smaller class cycled without replacement), shuffled."""
    rng = epoch_rng(seed, epoch, ORDER_STREAM)
    return rng.permutation(np.concatenate(_balanced_picks(labels, rng)))


def _pair_units(reals: np.ndarray, fakes: np.ndarray, sources: np.ndarray) -> list[list[int]]:
    """Picked images of each source video as (real, fake) pairs, in pick order; what is left over as singles."""
    by_source: dict[Any, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for side, picked in enumerate((reals, fakes)):
        for i in picked:
            by_source[sources[i]][side].append(int(i))
    units: list[list[int]] = []
    for source in sorted(by_source, key=str):
        real, fake = by_source[source]
        paired = min(len(real), len(fake))
        units += [[r, f] for r, f in zip(real[:paired], fake[:paired])]
        units += [[i] for i in real[paired:] + fake[paired:]]
    return units


def _pack(units: list[list[int]], batch_size: int) -> np.ndarray:
    """Units in order, except that a pair that would straddle two batches waits for a single to close the batch."""
    singles_left = sum(len(unit) == 1 for unit in units)
    order: list[int] = []
    held: list[list[int]] = []
    for unit in units:
        singles_left -= len(unit) == 1
        if len(unit) == 2 and len(order) % batch_size == batch_size - 1 and singles_left:
            held.append(unit)
            continue
        order += unit
        while held and len(order) % batch_size != batch_size - 1:
            order += held.pop(0)
    return np.array(order + [i for unit in held for i in unit], dtype=np.int64)


def paired_order(labels: np.ndarray, sources: np.ndarray, seed: int, epoch: int, batch_size: int) -> np.ndarray:
    """One epoch's order with paired batches: the class-balanced picks of `epoch_order`, a real and a fake frame of
    the same source video side by side in one batch, pairs and unpaired images shuffled together."""
    rng = epoch_rng(seed, epoch, ORDER_STREAM)
    units = _pair_units(*_balanced_picks(labels, rng), sources)
    return _pack([units[u] for u in rng.permutation(len(units))], batch_size)


def training_order(frames: LabelledImages, settings: LoraSettings, epoch: int) -> np.ndarray:
    """The epoch's order: paired batches (`--pair-batches`, `frames` with sources) or a class-balanced shuffle."""
    if settings.pair_batches:
        return paired_order(frames.labels, frames.sources, settings.train_seed, epoch, settings.batch_size)
    return epoch_order(frames.labels, settings.train_seed, epoch)


def _crop(img: Image.Image, rng: np.random.Generator, settings: LoraSettings) -> Image.Image:
    """Random-resized crop keeping at least `crop_scale` of the area, aspect close to the original."""
    w, h = img.size
    area = rng.uniform(settings.crop_scale, 1.0) * w * h
    ratio = math.exp(rng.uniform(*np.log(CROP_RATIO)))
    cw, ch = min(w, round(math.sqrt(area * ratio))), min(h, round(math.sqrt(area / ratio)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch))


def _flip(img: Image.Image, rng: np.random.Generator, settings: LoraSettings) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


def _jpeg(img: Image.Image, rng: np.random.Generator, settings: LoraSettings) -> Image.Image:
    """Re-compression, as frames meet it on the way to a detector; half of the images, random quality."""
    if rng.random() >= 0.5:
        return img
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=int(rng.integers(settings.jpeg_quality, JPEG_MAX_QUALITY + 1)))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


Augmentation = Callable[[Image.Image, np.random.Generator], Image.Image]
AUGMENTATIONS: dict[str, tuple[Callable[[LoraSettings], bool], Callable[..., Image.Image]]] = {
    "crop": (lambda s: s.crop_scale < 1, _crop),
    "flip": (lambda s: s.flip, _flip),
    "jpeg": (lambda s: s.jpeg_quality is not None, _jpeg),
}
"""Light, forensics-safe augmentations in the order they apply: (enabled by settings?, function)."""


def augmentations(settings: LoraSettings) -> list[Augmentation]:
    return [functools.partial(fn, settings=settings) for enabled, fn in AUGMENTATIONS.values() if enabled(settings)]


class TrainImages(Dataset):
    """One epoch of training images in a fixed order; image k's augmentation is seeded by (seed, epoch, k)."""

    def __init__(self, frames: LabelledImages, order: np.ndarray, preprocess: Callable[[Image.Image], torch.Tensor],
                 steps: list[Augmentation], seed: int, epoch: int) -> None:
        self.frames, self.order, self.preprocess, self.steps = frames, order, preprocess, steps
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        i = int(self.order[k])
        rng = epoch_rng(self.seed, self.epoch, AUGMENT_STREAM, k)
        path = self.frames.root / self.frames.paths[i]
        try:
            img = load_rgb(path)
        except Exception as exc:  # any decode failure: one line naming the frame, not a decoder traceback
            raise UserError(f"training frame {path} cannot be read any more ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}); it was readable when the "
                            "base cache was made") from None
        for step in self.steps:
            img = step(img, rng)
        return self.preprocess(img), int(self.frames.labels[i])


def make_loader(dataset: Dataset, settings: LoraSettings, device: torch.device, **kwargs: Any) -> DataLoader:
    """Batches of `settings.batch_size` (or a `batch_sampler`'s) decoded by `settings.workers` processes (pinned
    memory on CUDA)."""
    workers = settings.workers
    sizing = {} if "batch_sampler" in kwargs else {"batch_size": settings.batch_size}
    return DataLoader(dataset, num_workers=workers, pin_memory=device.type == "cuda",
                      prefetch_factor=4 if workers else None, **sizing, **kwargs)
