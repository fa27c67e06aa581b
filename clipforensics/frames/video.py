"""Reading evenly spaced frames from a video with OpenCV, trusting only frames actually decoded.

Container headers lie (truncated files, variable frame rates), so the frame count from
CAP_PROP_FRAME_COUNT only seeds the first guess: every video is read sequentially to its end, the
wanted frames are kept on the way, and the indices are recomputed from the true count. A second
pass runs only when the header was wrong and a recomputed index was not kept.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

import cv2
import numpy as np

from clipforensics.core.sampling import spread
from clipforensics.data.layouts import VIDEO_EXTENSIONS

__all__ = ["VIDEO_EXTENSIONS", "Sampled", "VideoError", "read_sampled"]


class VideoError(Exception):
    """A video that cannot be opened or decoded: listed with this reason and skipped, never fatal."""


@dataclass(frozen=True)
class Sampled:
    """The kept frames (BGR, uint8) of one video, their source indices and what the header claimed."""

    indices: tuple[int, ...]
    frames: tuple[np.ndarray, ...]
    n_frames: int  # frames actually decoded
    reported: int  # CAP_PROP_FRAME_COUNT, for the record


def sample_indices(n_frames: int, count: int) -> np.ndarray:
    """`count` source indices spread evenly over `n_frames` (all frames when the video is shorter)."""
    return spread(n_frames, count)


def _openable(path: Path) -> None:
    """Refuse what OpenCV must never be handed: a name that is not UTF-8 (it crashes the process), a broken link, a
    FIFO or other non-regular file (it blocks forever)."""
    try:
        os.fsdecode(path).encode("utf-8")
    except UnicodeEncodeError:
        raise VideoError("the file name is not valid UTF-8 (OpenCV cannot open it): rename the file") from None
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise VideoError(f"{'broken link' if os.path.islink(path) else 'cannot read'}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise VideoError("not a regular file")


def _open(path: Path, threads: int) -> cv2.VideoCapture:
    """FFmpeg only: other backends would read a file name as an image-sequence pattern."""
    _openable(path)
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    if not capture.isOpened():
        capture.release()
        raise VideoError("cannot open: not a video, truncated, or a codec OpenCV's FFmpeg cannot read")
    return capture


def reported_frame_count(path: Path) -> int:
    """What the container header claims (0 when it does not say)."""
    capture = _open(path, 1)
    try:
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()


def _read_pass(path: Path, wanted: Collection[int], threads: int) -> tuple[dict[int, np.ndarray], int]:
    """Decode the whole video once; keep the `wanted` frames; return them and the decoded count."""
    capture = _open(path, threads)
    kept: dict[int, np.ndarray] = {}
    index = 0
    try:
        while capture.grab():
            if index in wanted:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    raise VideoError(f"frame {index} was grabbed but could not be decoded")
                kept[index] = frame
            index += 1
    except cv2.error as exc:
        raise VideoError(f"decoder error at frame {index}: {str(exc).strip().splitlines()[-1]}") from None
    finally:
        capture.release()
    return kept, index


def read_sampled(path: str | Path, count: int, threads: int = 0) -> Sampled:
    """Evenly spaced frames of the video at `path` (see `sample_indices`), by sequential reading.

    `threads` is FFmpeg's decoding thread count (0: one per core; 1 when videos run in parallel).
    """
    path = Path(path)
    reported = reported_frame_count(path)
    kept, n_frames = _read_pass(path, set(sample_indices(reported, count).tolist()), threads)
    if n_frames == 0:
        raise VideoError("no frame could be decoded")
    indices = sample_indices(n_frames, count).tolist()
    missing = [i for i in indices if i not in kept]
    if missing:
        more, _ = _read_pass(path, set(missing), threads)
        kept.update(more)
    lost = [i for i in indices if i not in kept]
    if lost:
        raise VideoError(f"frames {lost[:5]} decoded once but not on a second pass (unstable decoder)")
    return Sampled(tuple(indices), tuple(kept[i] for i in indices), n_frames, reported)
