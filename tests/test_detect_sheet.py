"""detect.py's contact sheets: an image's at full width and called an image, the margin to the threshold, what a
raw score is, and relevance maps with a colour bar on one scale for all frames of an input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipforensics.detect.inputs import FRAMES, IMAGE, OK, VIDEO, Item, Prepared
from clipforensics.detect.score import Scored
from clipforensics.detect.sheet import (BAR, COLOURS, MAX_TILE, MIN_WIDTH, TILE, Verdict, contact_sheet, header_lines,
                                        overlay)


def scored(kind: str, frame_scores: list[float], threshold: float = 0.5) -> Scored:
    n = len(frame_scores)
    pixels = torch.full((n, 3, 64, 64), 120, dtype=torch.uint8)
    prepared = Prepared(Item(Path("some/where/input_with_a_rather_long_name") / f"x.{kind}", kind), OK, pixels,
                        [{"frame": f"{k:03d}.png"} for k in range(n)])
    score = float(np.mean(frame_scores))
    return Scored(prepared, np.array(frame_scores), score, "fake" if score >= threshold else "real")


def test_a_single_image_sheet_is_full_width_and_says_image(tmp_path: Path) -> None:
    item = scored(IMAGE, [0.62], threshold=0.48)
    sheet = Image.open(contact_sheet(item, tmp_path / "s.png", Verdict(0.48)))
    assert sheet.width >= MIN_WIDTH  # was 136 px: the header was clipped
    assert np.asarray(sheet)[100, 100].tolist() == [120, 120, 120]  # the frame, shown large (MAX_TILE)
    (first, colour), (second, _) = header_lines(item, Verdict(0.48))
    assert first.startswith("FAKE   image score 0.620   threshold 0.480   margin +0.140") and colour == COLOURS["fake"]
    assert "uncalibrated, not a probability" in second and "%" not in first + second


@pytest.mark.parametrize("kind", [VIDEO, FRAMES])
def test_a_video_is_called_a_video_with_its_margin_and_calibrated_probability(kind: str) -> None:
    item = scored(kind, [0.2, 0.3, 0.4], threshold=0.5)
    (first, colour), (second, _) = header_lines(item, Verdict(0.5, 0.1234, "platt on 64 validation frames"))
    assert first.startswith("REAL   video score 0.300") and "margin -0.200 (below the threshold)" in first
    assert second == ("calibrated P(fake) 0.123 (platt on 64 validation frames); the raw score 0.300 is no "
                      "probability") and colour == COLOURS["real"]


def test_relevance_maps_share_one_scale_and_get_a_colour_bar(tmp_path: Path) -> None:
    item = scored(VIDEO, [0.7, 0.8])
    strong, weak = np.zeros((64, 64)), np.zeros((64, 64))
    strong[:8, :8], weak[:8, :8] = 0.2, 0.05
    sheet = np.asarray(Image.open(contact_sheet(item, tmp_path / "s.png", Verdict(0.5), [strong, weak])))
    plain = np.asarray(Image.open(contact_sheet(item, tmp_path / "p.png", Verdict(0.5))))
    assert sheet.shape[1] >= MIN_WIDTH and sheet.shape[0] > plain.shape[0] + 2 * TILE
    rgb = np.full((64, 64, 3), 120, np.uint8)
    assert overlay(rgb, weak, 0.2)[0, 0, 0] < overlay(rgb, strong, 0.2)[0, 0, 0]  # weak stays weak on one scale
    bar = [row for row in sheet.astype(int) if _is_bar(row)]
    assert len(bar) >= BAR[1] - 2  # the colour bar: grey rising to red over BAR[0] pixels


def _is_bar(row: np.ndarray) -> bool:
    """A run of BAR[0] pixels whose red rises and whose green falls, from grey to the overlay's red."""
    red, green = row[:, 0], row[:, 1]
    for start in range(len(row) - BAR[0]):
        r, g = red[start:start + BAR[0]], green[start:start + BAR[0]]
        if r[-1] - r[0] > 40 and g[0] - g[-1] > 40 and (np.diff(r) >= 0).all() and (np.diff(g) <= 0).all():
            return True
    return False


def test_many_frames_keep_the_smallest_tile_and_one_image_the_largest(tmp_path: Path) -> None:
    wide = Image.open(contact_sheet(scored(VIDEO, [0.1] * 10), tmp_path / "w.png", Verdict(0.5)))
    assert wide.width == 8 * (TILE + 8)
    one = Image.open(contact_sheet(scored(IMAGE, [0.1]), tmp_path / "o.png", Verdict(0.5)))
    assert one.height > MAX_TILE
