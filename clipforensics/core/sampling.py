"""Even spreading, the one rule for "N of M" everywhere: frames of a video, rows of a cache, frames per video.

Taking the first N frames of a video is a known protocol mistake (the start of a clip is not the clip);
positions are rint(linspace(0, M-1, N)), so the first and last are always included.
"""

from __future__ import annotations

import numpy as np


def spread(total: int, count: int) -> np.ndarray:
    """`min(count, total)` distinct positions in [0, total) spread evenly, first and last included.

    np.rint rounds halves to even (29.5 -> 30, 44.25 -> 44): 60 frames sampled 5 times gives
    0, 15, 30, 44, 59. `total` <= 0 gives no positions.
    """
    if total <= 0 or count <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.rint(np.linspace(0, total - 1, min(count, total))).astype(np.int64))
