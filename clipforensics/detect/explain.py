"""Where the detector looked: a relevance map per frame, at the model's input resolution.

Occlusion sensitivity (Zeiler & Fergus) is the default because it needs nothing from the model but scores: a
window of the image is replaced by a neutral fill, and the drop of the fake probability is the window's relevance
(positive: the window made the frame look fake). Each pixel gets the mean over the windows that cover it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from clipforensics.core.errors import UserError
from clipforensics.detect.fills import FILLS

ScoreFn = Callable[[torch.Tensor], np.ndarray]


@dataclass(frozen=True)
class Occlusion:
    """Window side and step in model-input pixels, and what an occluded window is filled with."""

    patch: int
    stride: int
    fill: str = "mean"
    batch_size: int = 64

    def check(self, image_size: int) -> None:
        if not 1 <= self.patch <= image_size or not 1 <= self.stride <= self.patch:
            raise UserError(f"--explain-patch must be in 1..{image_size} (the model's input size) and "
                            f"--explain-stride in 1..patch; got patch {self.patch}, stride {self.stride}")
        FILLS.get(self.fill)


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Window starts every `stride` pixels, with a last window flush with the edge so every pixel is covered."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def occlusion_map(score_images: ScoreFn, image: torch.Tensor, settings: Occlusion) -> tuple[np.ndarray, float]:
    """(relevance map H x W, the frame's own score) for one normalised model input (3 x H x W)."""
    height, width = image.shape[-2:]
    fill = FILLS.get(settings.fill)(image)
    windows = [(y, x) for y in _starts(height, settings.patch, settings.stride)
               for x in _starts(width, settings.patch, settings.stride)]
    drops = []
    base = float(score_images(image[None])[0])
    for start in range(0, len(windows), settings.batch_size):
        batch = image[None].repeat(len(windows[start:start + settings.batch_size]), 1, 1, 1)
        for k, (y, x) in enumerate(windows[start:start + settings.batch_size]):
            window = (slice(None), slice(y, y + settings.patch), slice(x, x + settings.patch))
            batch[k][window] = fill[window]
        drops.append(base - score_images(batch))
    drop = np.concatenate(drops)
    total = np.zeros((height, width))
    count = np.zeros((height, width))
    for (y, x), value in zip(windows, drop):
        total[y:y + settings.patch, x:x + settings.patch] += value
        count[y:y + settings.patch, x:x + settings.patch] += 1
    return total / count, base
