"""What a data root that could not be read looks like instead: the folder above it, or a folder of videos.

Two mistakes are common and the scanner's own error ("no real class folder", "no images") does not name them:
passing `data/` that holds the data root `data/synthetic/`, and passing videos to a stage that reads frames
before prepare_frames.py has made them. `root_hint` looks at the top of the root (cheaply, never the whole tree)
and says what to pass instead; `choose.scan` adds it to the scanner's error line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Collection

from clipforensics.data.layouts.base import VIDEO_EXTENSIONS, subfolders
from clipforensics.data.manifest import IMAGE_EXTENSIONS

DEPTH = 5  # the FF++ download tree holds its videos 5 levels down: original_sequences/youtube/c23/videos/x.mp4
MAX_FOLDERS = 200  # folders looked at before giving up: a hint must cost nothing beside the scan it follows

Marker = Callable[[Path], bool]


def _data_roots_inside(root: Path, real_classes: Collection[str], markers: list[Marker]) -> list[Path]:
    """Sub-folders of `root` that are data roots themselves: they hold a real class folder or a data set's markers."""
    return [child for child in subfolders(root)
            if any((child / name).is_dir() for name in real_classes) or any(marker(child) for marker in markers)]


def _first_video(root: Path) -> str | None:
    """A video file below `root` (relative path) when the top of the tree holds videos and no images, else None."""
    video = None
    for count, (dirpath, dirnames, filenames) in enumerate(os.walk(root)):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < DEPTH else []
        names = sorted(name for name in filenames if not name.startswith("."))
        suffixes = {os.path.splitext(name)[1].lower() for name in names}
        if IMAGE_EXTENSIONS & suffixes or count >= MAX_FOLDERS:
            return None
        found = [name for name in names if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS]
        if found and video is None:
            video = os.path.join(os.path.relpath(dirpath, root), found[0])
    return os.path.normpath(video) if video else None


def root_hint(root: Path, real_classes: Collection[str], markers: list[Marker]) -> str | None:
    """One sentence saying what to pass instead of `root`, or None when it looks like neither mistake."""
    inside = _data_roots_inside(root, real_classes, markers)
    if inside:
        names = " or ".join(f"--data-root {path}" for path in inside[:3])
        return (f"{root} looks like the folder above the data root ({inside[0]} holds the class folders): "
                f"pass {names}")
    video = _first_video(root)
    if video:
        sort = "" if os.sep in video else " (sorted into one folder per class: Real_youtube/, FaceSwap/, ...)"
        return (f"{root} holds videos ({video}), not frames: run python prepare_frames.py --videos-root {root}{sort} "
                "--out FRAMES first, then pass --data-root FRAMES")
    return None
