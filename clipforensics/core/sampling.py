"""Even spreading, the one rule for "N of M" everywhere: frames of a video, rows of a cache, frames per video.

Taking the first N frames of a video is a known protocol mistake (the start of a clip is not the clip);
positions are rint(linspace(0, M-1, N)), so the first and last are always included; one frame (N = 1) is
the middle one. Frames are in natural order before they are spread: by frame number where their names carry
one (0.png, 1.png, 2.png, ..., 10.png), not as strings (0, 1, 10, 11, 2, ...).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from clipforensics.core.errors import UserError

_DIGITS = re.compile(r"(\d+)")


def spread(total: int, count: int) -> np.ndarray:
    """`min(count, total)` distinct positions in [0, total) spread evenly, first and last included.

    np.rint rounds halves to even (29.5 -> 30, 44.25 -> 44): 60 frames sampled 5 times gives
    0, 15, 30, 44, 59. One position is the middle, (total - 1) // 2 (the earlier of two middles: 29 of 60).
    `total` <= 0 gives no positions.
    """
    if total <= 0 or count <= 0:
        return np.zeros(0, dtype=np.int64)
    if count == 1:
        return np.array([(total - 1) // 2], dtype=np.int64)
    return np.unique(np.rint(np.linspace(0, total - 1, min(count, total))).astype(np.int64))


def natural_key(text: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key in natural order: runs of digits compare as numbers ('frame9' before 'frame10'), the text itself
    breaks ties ('007' and '7')."""
    parts = _DIGITS.split(text)
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), text


def frame_order(videos: Sequence[str], paths: Sequence[str]) -> np.ndarray:
    """Positions of the rows by video, then in natural order of their paths within each video."""
    return np.array(sorted(range(len(paths)), key=lambda i: (str(videos[i]), natural_key(str(paths[i])))),
                    dtype=np.int64)


def sample_frames(df: pd.DataFrame, per_video: int | None) -> pd.DataFrame:
    """Keep at most `per_video` frames of each video (`video`, `path` columns), spread over it in natural frame
    order (not the first N; the middle one for 1), in df's order."""
    if per_video is None or df.empty:
        return df
    if per_video < 1:
        raise UserError(f"frames per video must be at least 1, got {per_video}")
    order = frame_order(df["video"].astype(str).tolist(), df["path"].astype(str).tolist())
    videos = df["video"].astype(str).to_numpy()[order]
    starts = np.flatnonzero(np.r_[True, videos[1:] != videos[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    picks = np.concatenate([start + spread(size, per_video) for start, size in zip(starts, sizes)])
    return df.iloc[np.sort(order[picks])]
