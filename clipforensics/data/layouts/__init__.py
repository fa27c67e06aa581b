"""Data set layouts: one module per data set in this package, each registering one `Layout` in `LAYOUTS`.

A layout is chosen by `--layout NAME` or detected (`auto`) from the root's marker files, in the registry's
priority order. Its entry serves both readers: extraction's frame scanner (`scan`) and prepare_frames.py
(`video_files`, `copy_label_files`). A new data set is one new module here with its `LAYOUTS.register`
call: every module of the package is imported below, so nothing else names it.

A layout may carry an official split per video (`official_split`: train, val, test or empty): Celeb-DF's
test list, DFDC-preview's `set`, a CSV's `split` column. It is stored in the cache, so a cache tested on
elsewhere can use exactly its official test videos.
"""

from __future__ import annotations

import importlib
import pkgutil

from clipforensics.data.layouts.base import LAYOUTS, VIDEO_EXTENSIONS, VideoFile
from clipforensics.data.layouts.choose import (AUTO, copy_label_files, frame_reader, reader_names, resolve,
                                               resolve_videos, scan, video_files, video_reader)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["AUTO", "LAYOUTS", "VIDEO_EXTENSIONS", "VideoFile", "copy_label_files", "frame_reader",
           "reader_names", "resolve", "resolve_videos", "scan", "video_files", "video_reader"]
