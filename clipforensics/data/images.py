"""Decoding a frame into the 8-bit RGB picture every model sees, the same way in every stage.

Decisions (README, "Reliability"):
- EXIF orientation is applied: the pixels are the picture as any viewer shows it. Video frames
  (prepare_frames.py writes PNG) carry no EXIF, so they are unaffected; a phone JPEG stored sideways
  is turned upright instead of reaching CLIP rotated.
- 16-bit images (grey `I;16`, or `I` holding 0..65535) are scaled to 8 bits (÷257). Pillow's own
  `convert("RGB")` clips them instead: a 16-bit frame became almost all white.
- Palette, grey, CMYK, YCbCr and 1-bit images are converted to RGB; an alpha channel that is fully
  opaque is dropped. Transparent pixels (whose colour is undefined), floating-point images (unknown
  range) and other modes raise ValueError: the frame is listed as failed with that reason.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
ALPHA = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def to_rgb(img: Image.Image) -> Image.Image:
    """An 8-bit RGB image with the same picture, or ValueError saying why there is none."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in SIXTEEN_BIT:
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"{mode} image with values outside 0..65535: its range is unknown")
        grey = np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        raise ValueError("floating-point image: its value range is unknown")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ALPHA:
        alpha = np.asarray(img.getchannel("A"))
        if alpha.size and alpha.min() < 255:
            raise ValueError(f"{int((alpha < 255).sum())} transparent pixel(s): their colour is undefined")
        return img.convert("RGB")
    if mode in ("L", "P", "1", "CMYK", "YCbCr"):
        return img.convert("RGB")
    raise ValueError(f"image mode {mode} is not supported")


def decode_rgb(img: Image.Image, draft_size: int | None = None) -> Image.Image:
    """Decode an opened image fully (upright per EXIF, 8-bit RGB); raises on anything unreadable.

    `draft_size`: a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose both sides stay
    >= it, so the one resize after it still only shrinks (2-4x less decoding for full frames).
    """
    if draft_size and img.format == "JPEG":
        img.draft("RGB", (draft_size, draft_size))
    img.load()
    return to_rgb(ImageOps.exif_transpose(img))


def load_rgb(path: str | os.PathLike, draft_size: int | None = None) -> Image.Image:
    """`decode_rgb` of the file at `path`."""
    with Image.open(path) as img:
        return decode_rgb(img, draft_size)
