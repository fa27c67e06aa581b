"""Reader side of extraction: a Dataset whose DataLoader workers decode images, and its collate.

Bad files become a reason string, never a crash: one unreadable frame must not stop a long run.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset


class ImageFiles(Dataset):
    """Reader: decodes one image; an unreadable file yields a zero tensor and the reason."""

    def __init__(self, root: Path, paths: list[str], preprocess, image_size: int) -> None:
        self.root, self.paths, self.preprocess, self.image_size = root, paths, preprocess, image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            with Image.open(self.root / self.paths[i]) as img:
                img.load()
                return self.preprocess(img.convert("RGB")), i, ""
        except Exception as exc:  # any decode failure is data, not a crash
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            return torch.zeros(3, self.image_size, self.image_size), i, reason


def collate_images(batch: list[tuple[torch.Tensor, int, str]]) -> tuple[torch.Tensor, list[int], list[str]]:
    images, idx, reasons = zip(*batch)
    return torch.stack(images), list(idx), list(reasons)
