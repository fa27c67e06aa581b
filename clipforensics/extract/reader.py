"""Reader side of extraction: a Dataset whose DataLoader workers decode images, and its collate.

Workers do integer work only: decode (a JPEG straight at reduced DCT scale when it is at least twice
the model's resolution), open_clip's own resize and crop, uint8 out. Scaling, normalisation and the
cast to the model's dtype happen on the model's device, on the whole batch (`LoadedModel.encode_images`),
so workers never make float32 copies 4x the size of the pixels they decoded.
Bad files become a reason string, never a crash: one unreadable frame must not stop a long run.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from clipforensics.data.images import load_rgb
from clipforensics.extract.perturb import Perturbation, perturbed_copies


class ImageFiles(Dataset):
    """Decodes one image; an unreadable file yields a zero image and the reason.

    With `uint8=True`, `preprocess` is PIL-only (`LoadedModel.pixels`) and items are uint8 CHW pixels;
    otherwise `preprocess` is a full transform returning the model's float input."""

    def __init__(self, root: Path, paths: list[str], preprocess: Callable[[Image.Image], Any], image_size: int,
                 uint8: bool = False, perturbations: tuple[Perturbation, ...] = (), seed: int = 0) -> None:
        self.root, self.paths, self.preprocess, self.image_size = root, paths, preprocess, image_size
        self.uint8, self.perturbations, self.seed = uint8, perturbations, seed
        if perturbations and not uint8:
            raise ValueError("perturbed copies are made on the uint8 path")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            img = load_rgb(regular_file(self.root / self.paths[i]), self.image_size if self.uint8 else None)
            if self.uint8:
                return self._views(img, i), i, ""
            return self.preprocess(img), i, ""
        except Exception as exc:  # any decode failure is data, not a crash
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            dtype = torch.uint8 if self.uint8 else torch.float32
            shape = (1 + len(self.perturbations), 3) if self.perturbations else (3,)
            return torch.zeros(*shape, self.image_size, self.image_size, dtype=dtype), i, reason

    def _views(self, img: Image.Image, i: int) -> torch.Tensor:
        """The clean pixels, or (with perturbations) clean + each copy stacked: 1+P x C x H x W."""
        clean = uint8_pixels(self.preprocess(img))
        if not self.perturbations:
            return clean
        copies = [uint8_pixels(self.preprocess(copy))
                  for copy in perturbed_copies(self.root / self.paths[i], self.perturbations, self.seed, i)]
        return torch.stack([clean, *copies])


def regular_file(path: Path) -> Path:
    """`path` when it is a regular file (links followed); a FIFO, socket or device is never opened (a FIFO would
    block the reader forever) and a broken link is named as one: either fails as data, with that reason."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise OSError(f"{'broken link' if os.path.islink(path) else 'missing file'}: {path}") from None
    if not stat.S_ISREG(mode):
        raise OSError(f"not a regular file: {path}")
    return path


def uint8_pixels(img: Image.Image) -> torch.Tensor:
    """HWC bytes (one copy out of PIL) as a CHW uint8 view; no float work."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


def describe_preprocessing(pixels: Any, image_size: int, mean: list[float], std: list[float]) -> str:
    """What a cache records about how its pixels were made, in words a person can check."""
    steps = ", ".join(type(t).__name__ + _args(t) for t in getattr(pixels, "transforms", [pixels]))
    return (f"workers: PIL decode (JPEG at DCT scale keeping both sides >= {image_size} px), {steps}, uint8; "
            f"model device: /255, normalize mean={[round(m, 6) for m in mean]} std={[round(s, 6) for s in std]}")


def _args(t: Any) -> str:
    size, interpolation = getattr(t, "size", None), getattr(t, "interpolation", None)
    parts = [str(v.value if hasattr(v, "value") else v) for v in (size, interpolation) if v is not None]
    return f"({', '.join(parts)})" if parts else ""


def collate_images(batch: list[tuple[torch.Tensor, int, str]]) -> tuple[torch.Tensor, list[int], list[str]]:
    images, idx, reasons = zip(*batch)
    return torch.stack(images), list(idx), list(reasons)
