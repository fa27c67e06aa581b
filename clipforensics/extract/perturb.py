"""Perturbed copies of every frame (JPEG, blur, resize, noise), made by Pillow in the reader's workers.

Levels are in the frame's own pixels, on every file format and size: copies are made from the frame decoded at
full resolution (`perturbed_copies`), never from the reduced-scale JPEG decode (draft) that the clean input may
use, then go through the model's own resize and crop. Applying the perturbation before the reduction is exact
for every kind; scaling a level by the decode factor is not (JPEG blocks and pixel noise do not commute with a
DCT-domain downscale), so a PNG and a large JPEG of one frame get the same perturbation. Noise is seeded per
(seed, row, kind, level) only: the same cache comes out whatever the worker count, batch order or the
position of the level in --perturb.
Each kind has an identity level (blur 0, noise 0, resize 1) that returns the image untouched; JPEG has
none (quality 100 still re-encodes).

Severity grows with blur radius and noise std, and as JPEG quality and resize factor fall.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.data.images import load_rgb

PERTURBED_GROUP = "perturbed"


@dataclass(frozen=True)
class Kind:
    """How one perturbation is applied, its valid levels, and which way is more severe."""

    apply: Callable[[Image.Image, float, np.random.Generator], Image.Image]
    valid: Callable[[float], bool]
    levels_help: str
    more_severe_when_lower: bool
    identity: float | None
    example: str


def _jpeg(img: Image.Image, quality: float, _rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def _blur(img: Image.Image, radius: float, _rng: np.random.Generator) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius))


def _resize(img: Image.Image, factor: float, _rng: np.random.Generator) -> Image.Image:
    """Down by `factor` (bicubic); the model's own resize brings it back up: the detail is lost."""
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BICUBIC)


def _noise(img: Image.Image, std: float, rng: np.random.Generator) -> Image.Image:
    """Gaussian noise of `std` on the 0..1 pixel scale, rounded and clipped back to bytes."""
    pixels = np.asarray(img, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, std * 255.0, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


KINDS: Registry[Kind] = Registry("perturbation")
KINDS.register("jpeg", Kind(_jpeg, lambda q: 1 <= q <= 100 and q == int(q), "JPEG quality 1..100", True, None,
                            "90,70"))
KINDS.register("blur", Kind(_blur, lambda r: r >= 0, "Gaussian blur radius in pixels >= 0", False, 0.0, "1,2"))
KINDS.register("resize", Kind(_resize, lambda f: 0 < f <= 1, "downscale factor in (0, 1]", True, 1.0, "0.5"))
KINDS.register("noise", Kind(_noise, lambda s: 0 <= s <= 1, "noise std on the 0..1 scale", False, 0.0, "0.02"))


@dataclass(frozen=True)
class Perturbation:
    kind: str
    level: float

    @property
    def name(self) -> str:
        """'jpeg:50', 'blur:1.5': the copy's name in the cache (/perturbed/<name>/image_embeddings). The short
        form only where it reads back as the same level: two levels never share a name (one copy would be lost)."""
        short = f"{self.level:g}"
        return f"{self.kind}:{short if float(short) == self.level else repr(self.level)}"

    @property
    def severity(self) -> float:
        """A number that grows with damage, for ordering levels of one kind."""
        return -self.level if KINDS.get(self.kind).more_severe_when_lower else self.level

    def apply(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        kind = KINDS.get(self.kind)
        if kind.identity is not None and self.level == kind.identity:
            return img
        return kind.apply(img, self.level, rng)


def parse_perturbations(specs: tuple[str, ...] | list[str]) -> tuple[Perturbation, ...]:
    """('jpeg:90,70', 'blur:1,2') -> each (kind, level); the CLI's comma lists arrive split, so a bare
    number continues the kind before it."""
    out: list[Perturbation] = []
    kind_name = None
    for spec in specs:
        if ":" in spec:
            kind_name, _, levels = spec.partition(":")
        elif kind_name is None:
            raise UserError(f"--perturb: {spec!r} names no kind; write e.g. jpeg:90,70 blur:1,2")
        else:
            levels = spec
        kind = KINDS.get(kind_name)
        if not levels.strip(", "):
            raise UserError(f"--perturb {spec!r} gives no level ({kind.levels_help}); write e.g. {kind_name}:"
                            f"{kind.example}")
        for text in levels.split(","):
            try:
                level = float(text)
            except ValueError:
                raise UserError(f"--perturb {kind_name}: {text!r} is not a number ({kind.levels_help})") from None
            if not math.isfinite(level) or not kind.valid(level):
                raise UserError(f"--perturb {kind_name}:{text} is out of range ({kind.levels_help})")
            p = Perturbation(kind_name, level)
            if p not in out:
                out.append(p)
    return tuple(out)


def perturbation_key(p: Perturbation | str) -> str:
    name = p.name if isinstance(p, Perturbation) else p
    return f"{PERTURBED_GROUP}/{name}/image_embeddings"


def parse_name(name: str) -> Perturbation:
    kind, _, level = name.partition(":")
    return Perturbation(kind, float(level))


def perturbation_rng(seed: int, row: int, perturbation: Perturbation) -> np.random.Generator:
    """One independent stream per (seed, manifest row, kind, level): the same noise in any worker, and wherever
    the level stands in --perturb (the kind by a checksum of its name, the level by its float64 bits)."""
    (bits,) = struct.unpack("<Q", struct.pack("<d", float(perturbation.level)))
    return np.random.default_rng([seed, row, zlib.crc32(perturbation.kind.encode()), bits])


def perturbed_copies(path: str | os.PathLike, perturbations: tuple[Perturbation, ...], seed: int,
                     row: int) -> list[Image.Image]:
    """Each perturbed copy of the frame at `path`, made on the frame decoded at full resolution (no JPEG draft),
    so every level means the same in the frame's own pixels whatever its format and size."""
    frame = load_rgb(path)
    return [p.apply(frame, perturbation_rng(seed, row, p)) for p in perturbations]
