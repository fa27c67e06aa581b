"""Contact sheet of one input: the frames the model saw, each with its score, framed in the colour of its decision.

Frames are shown as the model took them (after resizing and cropping), so the picture is the evidence. The header
names the input and what it is (an image, a video), the verdict, the score's margin to the threshold and either
the calibrated probability of fake or a plain statement that the raw score is uncalibrated (a raw 0.62 is no
"62 % fake"). With relevance maps, a second row overlays each frame with where the fake score came from, on one
scale for all frames of the input, and a colour bar and a legend say what the colours mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from clipforensics.core.io import atomic_path
from clipforensics.detect.inputs import IMAGE
from clipforensics.detect.score import FAKE, REAL, Scored

COLOURS = {FAKE: (214, 39, 40), REAL: (44, 160, 44)}
MAP_FRAME = (90, 90, 90)
GREY = (90, 90, 90)
TILE = 128  # the smallest tile side; fewer frames get larger tiles, up to MAX_TILE, so the sheet is used
MAX_TILE = 256
BORDER = 4
LABEL = 16
LINE = 17
PAD = 6
COLUMNS = 8
MIN_WIDTH = 600  # the header, the colour bar and the legend fit at this width whatever the number of frames
BAR = (200, 12)  # the colour bar's width and height
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class Verdict:
    """What the header says about the input: its decision, the threshold, and the calibrated probability if any."""

    threshold: float
    probability: float | None = None  # calibrated P(fake) of the input's score; None: uncalibrated
    calibration: str = ""  # "platt on 640 validation frames"


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """uint8 model pixels (3 x H x W) as an RGB array: what the model saw."""
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


def overlay(rgb: np.ndarray, relevance: np.ndarray, peak: float | None = None) -> np.ndarray:
    """Positive relevance in red over a greyed copy of the frame, 0 to `peak` (default: the frame's own maximum)."""
    grey = rgb.mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.6
    positive = np.clip(relevance, 0, None)
    peak = float(positive.max()) if peak is None else peak
    heat = np.clip(positive / peak, 0, 1) if peak > 0 else np.zeros_like(positive)
    red = np.stack([heat * 255, heat * 40, heat * 40], axis=2)
    return np.clip(grey * (1 - heat[..., None] * 0.8) + red * 0.8 + 0.4 * rgb * (1 - heat[..., None]), 0, 255
                   ).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tile(rgb: np.ndarray, caption: str, colour: tuple[int, int, int], side: int) -> Image.Image:
    tile = Image.new("RGB", (side + 2 * BORDER, side + 2 * BORDER + LABEL), colour)
    tile.paste(Image.fromarray(rgb).resize((side, side), Image.Resampling.NEAREST), (BORDER, BORDER))
    draw, font = ImageDraw.Draw(tile), _font(12)
    draw.text((BORDER, side + 2 * BORDER), _fit(caption, side, font, draw), fill=(255, 255, 255), font=font)
    return tile


def tile_side(n_frames: int, maps: bool) -> int:
    """Frames shown as large as the sheet's width allows: one image (and its map beside it) at MAX_TILE."""
    per_line = min(COLUMNS, n_frames if n_frames > 1 else 1 + maps)
    return int(np.clip(MIN_WIDTH // per_line - 2 * BORDER, TILE, MAX_TILE))


def header_lines(scored: Scored, verdict: Verdict) -> list[tuple[str, tuple[int, int, int]]]:
    """(text, colour) of the lines under the title: decision, score, threshold, margin; then what the score is."""
    what = "image" if scored.prepared.item.kind == IMAGE else "video"
    margin = scored.score - verdict.threshold
    first = (f"{scored.decision.upper()}   {what} score {scored.score:.3f}   threshold {verdict.threshold:.3f}   "
             f"margin {margin:+.3f} ({'at or above' if margin >= 0 else 'below'} the threshold)")
    if verdict.probability is None:
        second = "raw score: uncalibrated, not a probability of fake (detect.py --calibrate platt|isotonic)"
    else:
        second = (f"calibrated P(fake) {verdict.probability:.3f} ({verdict.calibration}); the raw score "
                  f"{scored.score:.3f} is no probability")
    return [(first, COLOURS[scored.decision]), (second, GREY)]


def _rows(scored: Scored, threshold: float, maps: list[np.ndarray] | None) -> list[list[Image.Image]]:
    """The frame tiles, and under them the relevance tiles on the input's shared scale (one image: side by side)."""
    item = scored.prepared
    side = tile_side(item.n_frames, maps is not None)
    rows = [[_tile(to_rgb(img), f"{frame['frame']}: {s:.3f}", COLOURS[FAKE if s >= threshold else REAL], side)
             for img, frame, s in zip(item.pixels, item.frames, scored.frame_scores)]]
    if maps is not None:
        peak = _peak(maps)
        rows.append([_tile(overlay(to_rgb(img), m, peak), f"relevance, peak {max(float(m.max()), 0):.3f}", MAP_FRAME,
                           side) for img, m in zip(item.pixels, maps)])
    return rows if len(rows[0]) > 1 else [[row[0] for row in rows]]


def _peak(maps: list[np.ndarray]) -> float:
    """The largest positive relevance of an input's frames: the top of its colour bar."""
    return max(max(float(m.max()), 0.0) for m in maps)


def legend_lines(maps: list[np.ndarray] | None) -> list[str]:
    """What the frames' borders and, with maps, the relevance colours mean."""
    lines = ["border: red = frame score at or above the threshold (fake), green = below (real)"]
    if maps is not None:
        lines += ["relevance: how much the fake score drops when a region is hidden (occlusion)",
                  "red = that region made the frame look fake; one scale for all frames; peak = a frame's largest drop"]
    return lines


def _colour_bar(draw: ImageDraw.ImageDraw, sheet: Image.Image, at: tuple[int, int], peak: float) -> None:
    """A bar from 0 to `peak` in the overlay's own colours (over mid grey), with its end values."""
    ramp = np.tile(np.linspace(0, peak if peak > 0 else 1, BAR[0]), (BAR[1], 1))
    strip = overlay(np.full((BAR[1], BAR[0], 3), 160, np.uint8), ramp, peak if peak > 0 else 1)
    sheet.paste(Image.fromarray(strip), at)
    draw.rectangle([at[0] - 1, at[1] - 1, at[0] + BAR[0], at[1] + BAR[1]], outline=(0, 0, 0))
    font = _font(12)
    draw.text((at[0] - 4 - draw.textlength("relevance  0", font=font), at[1] - 1), "relevance  0", fill=(0, 0, 0),
              font=font)
    draw.text((at[0] + BAR[0] + 4, at[1] - 1), f"{peak:.3f} drop of the fake score", fill=(0, 0, 0), font=font)


def _fit(text: str, width: float, font: ImageFont.ImageFont, draw: ImageDraw.ImageDraw) -> str:
    """`text` cut from the left ("…" + its end) to fit `width` pixels: a long path keeps its file name."""
    while len(text) > 1 and draw.textlength(text, font=font) > width:
        text = "…" + text[2:]
    return text


def _width(texts: list[str], grid: int, font: ImageFont.ImageFont) -> int:
    """Wide enough for the grid, MIN_WIDTH and every header and legend line (the title is cut to fit)."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return max(grid, MIN_WIDTH, *(int(measure.textlength(t, font=font)) + 2 * PAD for t in texts))


def contact_sheet(scored: Scored, path: Path, verdict: Verdict, maps: list[np.ndarray] | None = None,
                  title: str = "") -> Path:
    """Write the sheet of one scored input to `path` (atomically) and return it."""
    rows = _rows(scored, verdict.threshold, maps)
    lines, legend = header_lines(scored, verdict), legend_lines(maps)
    tile_w, tile_h = rows[0][0].size
    columns = min(COLUMNS, len(rows[0]))
    grid_lines = -(-len(rows[0]) // columns)
    font = _font(13)
    width = _width([text for text, _ in lines] + legend, columns * tile_w, font)
    top = PAD + LINE * (1 + len(lines)) + PAD
    bottom = top + grid_lines * len(rows) * tile_h + PAD
    height = bottom + LINE * len(legend) + (BAR[1] + 2 * PAD if maps is not None else 0) + PAD
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, PAD), _fit(title or str(scored.prepared.item.path), width - 2 * PAD, font, draw), fill=(0, 0, 0),
              font=font)
    for k, (text, colour) in enumerate(lines):
        draw.text((PAD, PAD + LINE * (k + 1)), text, fill=colour, font=font)
    for k in range(len(rows[0])):
        line, column = divmod(k, columns)
        for r, row in enumerate(rows):
            sheet.paste(row[k], (column * tile_w, top + (line * len(rows) + r) * tile_h))
    if maps is not None:
        _colour_bar(draw, sheet, (PAD + 84, bottom + PAD), _peak(maps))
        bottom += BAR[1] + 2 * PAD
    for k, text in enumerate(legend):
        draw.text((PAD, bottom + LINE * k), text, fill=GREY, font=_font(12))
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return path
