"""Both readers of a data set whose label files list its videos (Celeb-DF, DFDC, a CSV), from its listing alone.

A listed video `A/B/name.mp4` is read as a video file by prepare_frames.py, and as frames in `A/B/name/`
(same path, no extension), `A/name/` (what prepare_frames.py writes) or `A/frames/name/` (DeepfakeBench's
rearranged trees), so one set of label files labels the videos and the frames prepared from them.
"""

from __future__ import annotations

import posixpath
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.layouts.base import (REAL, Found, FrameReader, Layout, Listing, VideoClasses, VideoFile,
                                             VideoReader, find, stem)
from clipforensics.data.manifest import COLUMNS, IMAGE_EXTENSIONS, OFFICIAL_SPLIT, STRING_COLUMNS, ManifestSettings


def _frame_rows(videos: pd.DataFrame, found: Found, root: Path) -> pd.DataFrame:
    """The manifest rows of listed videos found as frames (or, for a CSV, as single images)."""
    parts, unfound = [], []
    for row in videos.itertuples(index=False):
        folder = found.frame_folder(row.listed)
        if folder is not None:
            paths = found.frames[folder]
        elif posixpath.splitext(row.listed)[1].lower() in IMAGE_EXTENSIONS and (root / row.listed).is_file():
            paths = [row.listed]
        else:
            unfound.append(row.listed)
            continue
        parts.append((paths, row))
    if unfound:
        print(f"note: {len(unfound)} of {len(videos)} listed videos have no frames under {root} "
              f"(first: {unfound[0]}); they are not in the manifest", file=sys.stderr)
    used = {posixpath.dirname(p) for paths, _ in parts for p in paths}
    unlisted = sorted(set(found.frames) - used)
    if unlisted:
        print(f"note: {len(unlisted)} folders of frames under {root} belong to no labelled video (first: "
              f"{unlisted[0]}); they are not in the manifest", file=sys.stderr)
    if not parts:
        raise UserError(f"no frames of any listed video under {root} (looked for each video's frames in "
                        "<path without extension>/, <top folder>/<name>/ and <top folder>/frames/<name>/)")
    repeat = np.array([len(paths) for paths, _ in parts])
    table = pd.DataFrame([row._asdict() for _, row in parts]).loc[np.repeat(np.arange(len(parts)), repeat)]
    table = table.reset_index(drop=True)
    table["path"] = [p for paths, _ in parts for p in paths]
    return table


def _to_manifest(table: pd.DataFrame) -> pd.DataFrame:
    """Frame rows as manifest rows; a frame in two videos or a video both real and fake is refused."""
    table = table.assign(video=table["manipulation"] + "/" + table["name"], label=table["label"].astype(np.int8))
    twice = table[table["path"].duplicated()]
    if len(twice):
        raise UserError(f"frame {twice['path'].iloc[0]} belongs to two listed videos; each video must be listed once")
    kinds = table.groupby("video")["label"].nunique()
    if (kinds > 1).any():
        raise UserError(f"video {kinds[kinds > 1].index[0]} is listed as both real and fake")
    columns = list(COLUMNS) + ([OFFICIAL_SPLIT] if OFFICIAL_SPLIT in table.columns else [])
    out = table.sort_values("path", kind="stable", ignore_index=True)[columns]
    return out.astype({name: str for name in STRING_COLUMNS})


def _select(manifest: pd.DataFrame, settings: ManifestSettings) -> pd.DataFrame:
    """The --classes named (real videos always kept); an unknown class is refused."""
    if not settings.classes:
        return manifest
    present = set(manifest["manipulation"])
    missing = [name for name in settings.classes if name not in present]
    if missing:
        raise UserError(f"class(es) {', '.join(missing)} not in the data set; available: {', '.join(sorted(present))}")
    keep = manifest["manipulation"].isin(settings.classes) | (manifest["label"] == REAL)
    return manifest[keep].reset_index(drop=True)


def listed_frames(videos: Listing) -> Callable[[Path, ManifestSettings], pd.DataFrame]:
    """The frame scanner of a listing: every frame of every listed video, labelled from the listing."""
    def scan(root: Path, settings: ManifestSettings) -> pd.DataFrame:
        """The manifest of one data root."""
        found = find(root)
        listed = videos(root, found, Path(settings.labels) if settings.labels else None)
        return _select(_to_manifest(_frame_rows(listed, found, root)), settings)
    return scan


def listed_videos(videos: Listing) -> Callable[[Path, str], VideoClasses]:
    """prepare_frames' finder of a listing: the listed videos present as files, by class, in name order."""
    def find_videos(root: Path, compression: str) -> VideoClasses:
        """The video files of one videos root, by class."""
        found = find(root)
        listed = [row.listed for row in videos(root, found, None).itertuples(index=False) if row.listed in found.files]
        loose = [path for path in listed if "/" not in path]
        if loose:
            raise UserError(f"video file {loose[0]} lies directly in {root}: put videos in a folder (its frames go "
                            "to <folder>/<name>/)")
        by_class: VideoClasses = {}
        for path in sorted(listed, key=lambda p: (p.split("/", 1)[0], stem(p))):
            top = path.split("/", 1)[0]
            by_class.setdefault(top, []).append(VideoFile(top, stem(path), root / path))
        return by_class
    return find_videos


def listed_layout(name: str, priority: int, detect: Callable[[Path], bool], videos: Listing,
                  label_files: Callable[[Path], list[str]]) -> Layout:
    """A data set read from its label files: the same marker and listing serve its frames and its videos."""
    return Layout(name, priority, frames=FrameReader(listed_frames(videos), detect),
                  videos=VideoReader(listed_videos(videos), detect), label_files=label_files)
