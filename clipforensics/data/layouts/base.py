"""What every data set module shares: the registry entry, what is on disk, and the listing of labelled videos.

A data set is one module in this package that registers one `Layout` in `LAYOUTS`. The entry carries both
readers: `frames` (how extraction's scanner reads a data root of frames) and `videos` (how
prepare_frames.py finds the video files to crop), each with the marker files that make `auto` pick it;
`priority` orders those markers, and a reader flagged `fallback` is taken when no marker is present.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.data.manifest import IMAGE_EXTENSIONS, OFFICIAL_SPLIT, ManifestSettings, walk

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv"})
OFFICIAL_SPLITS = ("train", "val", "test")
FRAMES_FOLDER = "frames"  # DeepfakeBench keeps a data set's frames in <class>/frames/<video>/
REAL, FAKE = 0, 1
CLASS_WORD = {REAL: "real", FAKE: "fake"}


# ---------------------------------------------------------------- what is on disk


@dataclass
class Found:
    """Video files and folders of frames under a root, by relative POSIX path."""

    files: set[str] = field(default_factory=set)
    frames: dict[str, list[str]] = field(default_factory=dict)  # folder -> sorted image paths in it

    def frame_folder(self, listed: str) -> str | None:
        """The folder holding the frames of a listed video path (a file path, or a folder)."""
        for candidate in frame_candidates(listed):
            if candidate in self.frames:
                return candidate
        return None


def frame_candidates(listed: str) -> list[str]:
    """Where the frames of listed video `A/B/name.mp4` may be: A/B/name, A/name, A/frames/name, A/B/frames/name."""
    stem_path = posixpath.splitext(listed)[0] if posixpath.splitext(listed)[1].lower() in VIDEO_EXTENSIONS else listed
    parent, name = posixpath.split(stem_path)
    top = stem_path.split("/", 1)[0]
    candidates = [stem_path]
    if top != stem_path:
        candidates += [f"{top}/{name}", f"{top}/{FRAMES_FOLDER}/{name}"]
    if parent:
        candidates.append(f"{parent}/{FRAMES_FOLDER}/{name}")
    return list(dict.fromkeys(candidates))


def find(root: Path) -> Found:
    """Every visible video file and every folder that directly holds images, below `root`."""
    found = Found()
    for dirpath, dirnames, filenames in walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        images = []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            ext = os.path.splitext(name)[1].lower()
            if ext in IMAGE_EXTENSIONS:
                images.append(prefix + name)
            elif ext in VIDEO_EXTENSIONS:
                found.files.add(prefix + name)
        if images:
            found.frames[prefix.rstrip("/")] = images
    return found


def stem(path: str) -> str:
    """A listed path's video name: its file name without extension."""
    return posixpath.splitext(posixpath.basename(path))[0]


def present(root: Path, *names: str) -> list[str]:
    """Those of `names` that are files in `root`: a layout's label files."""
    return [name for name in names if (root / name).is_file()]


def read_text(path: Path) -> str:
    """A label file's text (a BOM is dropped); unreadable is a one-line error."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def read_json(path: Path) -> object:
    """A label file's JSON; invalid JSON is a one-line error naming the file."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None


# ---------------------------------------------------------------- the listing a data set's label files give


LISTING_COLUMNS = ("listed", "label", "manipulation", "name", "target", "source", OFFICIAL_SPLIT)
"""One row per labelled video: `listed` is its path as its label file names it (a video file, or a
folder of frames), `name` its id inside its class; target/source the ids of the videos it was made from."""

Listing = Callable[[Path, Found, Path | None], pd.DataFrame]
"""(root, what is on disk, the --labels file or None) -> the labelled videos, LISTING_COLUMNS."""


def listing(rows: Iterable[dict]) -> pd.DataFrame:
    """Rows as a listing with every column, text columns as text."""
    table = pd.DataFrame(list(rows), columns=list(LISTING_COLUMNS))
    return table.fillna("").astype({c: str for c in LISTING_COLUMNS if c != "label"})


def listing_with_splits(rows: Iterable[dict]) -> pd.DataFrame:
    """The listing, with its official split column only where some video has an official split."""
    table = listing(rows)
    return table if (table[OFFICIAL_SPLIT] != "").any() else table.drop(columns=[OFFICIAL_SPLIT])


# ---------------------------------------------------------------- video files by class folder


@dataclass(frozen=True)
class VideoFile:
    """One labelled video file to prepare: frames go to <class_name>/<video>/ in the output."""

    class_name: str
    video: str
    source: Path


VideoClasses = dict[str, list[VideoFile]]
"""Output class -> its video files, in the order --max-videos takes them."""


def videos_in(folder: Path) -> list[Path]:
    """The visible video files directly in a folder, by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_EXTENSIONS)


def subfolders(folder: Path) -> list[Path]:
    """The visible sub-folders of a folder, by name (none when it is not one)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_videos(folders: dict[str, Path]) -> VideoClasses:
    """Class -> the video files directly in its folder, in file name order."""
    return {name: [VideoFile(name, path.stem, path) for path in videos_in(folder)] for name, folder in folders.items()}


# ---------------------------------------------------------------- the registry entry


def never(root: Path) -> bool:
    """The marker of a reader that `auto` takes only as the fallback (or that is chosen by name)."""
    return False


@dataclass(frozen=True)
class FrameReader:
    """How extraction's scanner reads a data root of frames: (root, settings) -> manifest."""

    scan: Callable[[Path, ManifestSettings], pd.DataFrame]
    detect: Callable[[Path], bool] = never
    fallback: bool = False


@dataclass(frozen=True)
class VideoReader:
    """How prepare_frames.py finds a videos root's files: (root, FF++ compression) -> videos by class."""

    find: Callable[[Path, str], VideoClasses]
    detect: Callable[[Path], bool] = never
    fallback: bool = False
    compression: bool = False
    """Whether --compression chooses the videos (then the crop recipe records it)."""


@dataclass(frozen=True)
class Layout:
    """One data set: its readers of frames and of videos (None: it has no such root), the files that label it."""

    name: str
    priority: int
    """`auto` checks markers in ascending priority; the first layout whose marker files are in the root wins."""
    frames: FrameReader | None = None
    videos: VideoReader | None = None
    label_files: Callable[[Path], list[str]] = lambda root: []
    """Files a prepared data root needs beside its frames (the test list, metadata.json): copied by prepare_frames."""


LAYOUTS: Registry[Layout] = Registry("layout")
