"""What identifies a frame's content, cheaply: its size and modification time (nanoseconds).

The manifest hash covers names only, so frames rewritten in place under the same names (e.g.
`prepare_frames.py --overwrite` with another margin) would look unchanged. Every cache stores each
frame's size and mtime; extraction ("nothing to do"?) and the LoRA stage (are these the frames the
cache was made from?) compare them with the files on disk. Reading every file for a content hash
would cost a large share of an extraction; size + mtime catches every rewrite by a normal writer.
A copy that does not keep times (plain `cp`, `scp`) reads as changed: copy with `cp -p` / `rsync -a`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from clipforensics.core.errors import UserError

MISSING = -1


def frame_stats(root: str | os.PathLike, paths: Sequence[str]) -> np.ndarray:
    """N x 2 int64: size and mtime_ns of each frame under `root` (MISSING for a file that is gone)."""
    out = np.full((len(paths), 2), MISSING, dtype=np.int64)
    for i, rel in enumerate(paths):
        try:
            st = os.stat(Path(root) / rel)
        except OSError:
            continue
        out[i] = (st.st_size, st.st_mtime_ns)
    return out


def stats_hash(paths: Sequence[str], stats: np.ndarray) -> str:
    """Short sha256 of names, sizes and times: what a resumed extraction's parts must have been made from."""
    h = hashlib.sha256()
    for rel, (size, mtime) in zip(paths, stats.tolist()):
        h.update(f"{rel}\t{size}\t{mtime}\n".encode("utf-8", "surrogateescape"))  # a name that is not UTF-8: its bytes
    return h.hexdigest()[:16]


def check_unchanged(root: str | os.PathLike, paths: Sequence[str], stored: np.ndarray, what: str,
                    fix: str) -> None:
    """Refuse, naming a count and the first one, when frames differ from when `what` was made."""
    current = frame_stats(root, paths)
    changed = np.flatnonzero((current != stored).any(axis=1))
    if not changed.size:
        return
    first = int(changed[0])
    if current[first, 0] == MISSING:
        detail = "is gone or unreadable"
    elif current[first, 0] != stored[first, 0]:
        detail = f"size {stored[first, 0]} -> {current[first, 0]} bytes"
    else:
        detail = "rewritten (same size, other modification time)"
    raise UserError(f"{changed.size} of {len(paths)} frames under {root} changed since {what} was made "
                    f"(first: {paths[first]}: {detail}); {fix}")
