"""The LoRA stage's training data: labelled image files, class-balanced epochs, light augmentation, loaders.

Everything random in epoch e (the image order, each image's augmentation, the DataLoader's worker seeds, LoRA
dropout) is drawn from generators seeded by (seed, e), so an epoch is the same whether the run started at epoch 1
or resumed after a crash, and training leaves torch's global random stream as it found it.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from clipforensics.core.errors import UserError
from clipforensics.data.images import load_rgb
from clipforensics.lora.model import LoraSettings

ORDER_STREAM, AUGMENT_STREAM = 0, 1
CROP_RATIO = (0.9, 1.1)
JPEG_MAX_QUALITY = 95


@dataclass(frozen=True)
class LabelledImages:
    """Image files of some manifest rows, with their labels."""

    root: Path
    paths: list[str]
    labels: np.ndarray

    @classmethod
    def of(cls, root: str | Path, rows: pd.DataFrame) -> "LabelledImages":
        return cls(Path(root), rows["path"].tolist(), rows["label"].to_numpy(np.int64))

    def __len__(self) -> int:
        return len(self.paths)


def epoch_rng(seed: int, epoch: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, stream, *more])


def epoch_seed(seed: int, epoch: int) -> int:
    """torch's seed for one epoch: the DataLoader's generator (worker seeds) and, inside the epoch, LoRA dropout."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_order(labels: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """One epoch's image order: half real, half fake (the smaller class cycled without replacement), shuffled."""
    rng = epoch_rng(seed, epoch, ORDER_STREAM)
    n = len(labels)
    picks = []
    for label, need in ((0, n // 2), (1, n - n // 2)):
        members = np.flatnonzero(labels == label)
        cycles = -(-need // len(members))
        picks.append(np.concatenate([rng.permutation(members) for _ in range(cycles)])[:need])
    return rng.permutation(np.concatenate(picks))


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
    """Batches of `settings.batch_size` decoded by `settings.workers` processes (pinned memory on CUDA)."""
    workers = settings.workers
    return DataLoader(dataset, batch_size=settings.batch_size, num_workers=workers,
                      pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None, **kwargs)
