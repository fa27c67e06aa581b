"""FaceForensics++: videos in its download tree, frames in one folder per class.

Videos: original_sequences/<kind>/<compression>/videos/ (class Real_<kind>) and
manipulated_sequences/<Method>/<compression>/videos/ (class <Method>), detected by those top folders.
Frames: Real_youtube/ (real; --real-classes for others) and one folder per manipulation (FaceSwap/, ...),
nested by video or flat <video>_<frame>.png; read by `data.manifest.scan`, and what `auto` falls back to.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.layouts.base import (LAYOUTS, FrameReader, Layout, VideoClasses, VideoReader, folder_videos,
                                             subfolders)
from clipforensics.data.manifest import ManifestSettings
from clipforensics.data.manifest import scan as scan_class_folders

TOP_FOLDERS = ("original_sequences", "manipulated_sequences")


def _class_folder_frames(root: Path, settings: ManifestSettings) -> pd.DataFrame:
    """Class folders of frames: the manifest's own scan."""
    return scan_class_folders(settings)


def _ffpp_folders(root: Path, compression: str) -> dict[str, Path]:
    """Class name -> videos folder: original_sequences/<kind> -> Real_<kind>, manipulated -> <Method>."""
    folders = {f"Real_{kind.name}": kind / compression / "videos" for kind in subfolders(root / "original_sequences")}
    folders.update({m.name: m / compression / "videos" for m in subfolders(root / "manipulated_sequences")})
    found = {name: folder for name, folder in folders.items() if folder.is_dir()}
    if not found:
        compressions = sorted({c.name for group in TOP_FOLDERS for kind in subfolders(root / group)
                               for c in subfolders(kind)})
        raise UserError(f"no {compression}/videos folders in the FF++ tree {root}; "
                        f"compressions found: {', '.join(compressions) or 'none'} (set --compression)")
    return found


def ffpp_videos(root: Path, compression: str) -> VideoClasses:
    """The FF++ tree's videos of one compression, by class."""
    return folder_videos(_ffpp_folders(root, compression))


LAYOUTS.register("ffpp", Layout(
    "ffpp", priority=0,
    frames=FrameReader(_class_folder_frames, fallback=True),
    videos=VideoReader(ffpp_videos, detect=lambda root: any((root / name).is_dir() for name in TOP_FOLDERS),
                       compression=True)))
