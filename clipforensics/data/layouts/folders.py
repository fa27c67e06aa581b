"""Plain class folders of videos (prepare_frames.py only): every visible sub-folder of the root is a class.

What `auto` falls back to for a videos root; the frames written from it are read as `ffpp` class folders.
"""

from __future__ import annotations

from pathlib import Path

from clipforensics.data.layouts.base import LAYOUTS, Layout, VideoClasses, VideoReader, folder_videos, subfolders


def class_folder_videos(root: Path, compression: str) -> VideoClasses:
    """Every visible sub-folder of the root is a class; --compression means nothing here."""
    return folder_videos({folder.name: folder for folder in subfolders(root)})


LAYOUTS.register("folders", Layout("folders", priority=100, videos=VideoReader(class_folder_videos, fallback=True)))
