"""Contact sheet of one input: the frames the model saw, each with its score, framed in the colour of its decision.

Frames are shown as the model took them (after resizing and cropping), so the picture is the evidence. With
relevance maps, a second row overlays each frame with where the fake probability came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from clipforensics.core.io import atomic_path
from clipforensics.detect.score import FAKE, Scored

COLOURS = {FAKE: (214, 39, 40), "real": (44, 160, 44)}
TILE = 128
BORDER = 4
LABEL = 16
COLUMNS = 8
BACKGROUND = (255, 255, 255)


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """uint8 model pixels (3 x H x W) as an RGB array: what the model saw."""
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


def overlay(rgb: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """Positive relevance in red over a greyed copy of the frame (scaled to the frame's own maximum)."""
    grey = rgb.mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.6
    peak = float(np.clip(relevance, 0, None).max())
    heat = np.clip(relevance, 0, None) / peak if peak > 0 else np.zeros_like(relevance)
    red = np.stack([heat * 255, heat * 40, heat * 40], axis=2)
    return np.clip(grey * (1 - heat[..., None] * 0.8) + red * 0.8 + 0.4 * rgb * (1 - heat[..., None]), 0, 255
                   ).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tile(rgb: np.ndarray, caption: str, colour: tuple[int, int, int]) -> Image.Image:
    tile = Image.new("RGB", (TILE + 2 * BORDER, TILE + 2 * BORDER + LABEL), colour)
    tile.paste(Image.fromarray(rgb).resize((TILE, TILE), Image.Resampling.NEAREST), (BORDER, BORDER))
    ImageDraw.Draw(tile).text((BORDER, TILE + 2 * BORDER), caption, fill=(255, 255, 255), font=_font(12))
    return tile


def contact_sheet(scored: Scored, path: Path, threshold: float, maps: list[np.ndarray] | None = None,
                  title: str = "") -> Path:
    """Write the sheet of one scored input to `path` (atomically) and return it."""
    item = scored.prepared
    rows = [[_tile(to_rgb(img), f"{frame['frame']}: {s:.3f}", COLOURS[FAKE if s >= threshold else "real"])
             for img, frame, s in zip(item.pixels, item.frames, scored.frame_scores)]]
    if maps is not None:
        rows.append([_tile(overlay(to_rgb(img), m), "relevance", (90, 90, 90))
                     for img, m in zip(item.pixels, maps)])
    tile_w, tile_h = rows[0][0].size
    columns = min(COLUMNS, len(rows[0]))
    lines = -(-len(rows[0]) // columns)
    header = 2 * LABEL + 8
    sheet = Image.new("RGB", (columns * tile_w, header + lines * len(rows) * tile_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    verdict = f"{scored.decision.upper()}  video score {scored.score:.3f} (threshold {threshold:.3f})"
    draw.text((4, 2), title or item.item.path.name, fill=(0, 0, 0), font=_font(13))
    draw.text((4, LABEL + 2), verdict, fill=COLOURS[scored.decision], font=_font(13))
    for k in range(len(rows[0])):
        line, column = divmod(k, columns)
        for r, row in enumerate(rows):
            sheet.paste(row[k], (column * tile_w, header + (line * len(rows) + r) * tile_h))
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return path
