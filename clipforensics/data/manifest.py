"""What is in a data root: one row per frame image, with its class, video and FF++ target/source ids.

A data root holds one folder per class (real: `Real_youtube`; fakes: one per manipulation). Frames are
either nested (`FaceSwap/000_003/012.png`: the first sub-folder under the class is the video) or flat
(`FaceSwap/000_003_012.png`: the video is the file stem before its last `_`). The same rule, in
`video_of`, also reads paths in external prediction files, so scans and evaluations agree on videos.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from dataclasses import dataclass
from typing import Collection, Iterator

import numpy as np
import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.sampling import natural_key
from clipforensics.core.settings import option

REAL_CLASSES = ("Real_youtube",)
KNOWN_MANIPULATIONS = ("FaceSwap", "NeuralTextures", "Deepfakes", "Face2Face", "FaceShifter", "DeepFakeDetection")
KNOWN_CLASSES = REAL_CLASSES + KNOWN_MANIPULATIONS
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
COLUMNS = ("path", "label", "manipulation", "video", "target", "source")
STRING_COLUMNS = ("path", "manipulation", "video", "target", "source")
HASHED_COLUMNS = ("path", "label", "manipulation", "video")
OFFICIAL_SPLIT = "official_split"
"""Optional manifest column: a data set's own split of each video (Celeb-DF's test list, ...; data/layouts/)."""
FFPP_PAIR = re.compile(r"^(\d+)_(\d+)$")


@dataclass
class DataSettings:
    """Where the frames are and how to read class and video from a frame's path: shared by every stage
    that reads frame paths (scanning a data root, reading external prediction files)."""

    GROUP = "data"
    data_root: str | None = option(
        None, "data root: one folder per class (Real_youtube/, FaceSwap/, ...), frames in video "
              "sub-folders or named <video>_<frame>.png", metavar="DIR")
    real_classes: tuple[str, ...] = option(REAL_CLASSES, "folder name(s) of real videos")
    video_pattern: str | None = option(
        None, "regex with group 'video' (or group 1) applied to the path inside the class folder", metavar="REGEX")


@dataclass
class ManifestSettings(DataSettings):
    """A data root to scan: the data group, which classes to keep, its layout; a data root is required."""

    classes: tuple[str, ...] = option((), "only these class folders (default: all; real folders are always kept)")
    layout: str = option("auto", "data set layout: auto (detected from the root's marker files) or a layout's name, "
                                 "e.g. ffpp, celebdf, dfdc, csv (one module each in clipforensics/data/layouts/; see "
                                 "docs/cross-dataset.md)", metavar="NAME")
    labels: str | None = option(None, "label file of --layout csv (default: DATA_ROOT/labels.csv)", metavar="FILE")

    def __post_init__(self) -> None:
        if not self.data_root:
            raise UserError("no data root given (--data-root DIR)")


def compile_video_pattern(pattern: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    """Compile a user's video regex once, failing with one line rather than a traceback."""
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"video_pattern {pattern!r} does not compile: {exc}") from None
    if not compiled.groups:
        raise UserError(f"video_pattern {pattern!r} needs a group named 'video' (or a group 1)")
    return compiled


def _pattern_video(class_name: str, relative: str, pattern: re.Pattern[str]) -> str:
    match = pattern.search(relative)
    video = match.group("video" if "video" in pattern.groupindex else 1) if match else None
    if not video:
        raise UserError(f"video_pattern {pattern.pattern!r} does not match {class_name}/{relative}")
    return video


def _layout_video(relative: str) -> str:
    """Nested: first folder under the class; flat: file stem before its last '_'."""
    first, nested, _ = relative.partition("/")
    if nested:
        return first
    stem = posixpath.splitext(relative)[0]
    return stem.rpartition("_")[0] or stem


def video_id(class_name: str, relative: str, pattern: re.Pattern[str] | None = None) -> str:
    """Video id (without class) of a frame at POSIX path `relative` inside its class folder."""
    return _pattern_video(class_name, relative, pattern) if pattern else _layout_video(relative)


def _class_index(parts: list[str], class_names: Collection[str]) -> int | None:
    """Index of the class folder: the last known class name above the file, else the grandparent."""
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in class_names:
            return index
    return len(parts) - 3 if len(parts) >= 3 else None


def video_of(path: str, *, class_names: Collection[str] | None = None,
             video_pattern: str | re.Pattern[str] | None = None) -> tuple[str, str]:
    """(class, video key) of any frame path: relative or absolute, POSIX or Windows.

    A known class folder (`class_names`, default KNOWN_CLASSES) anywhere above the file anchors the
    path, then the layout rule applies inside it; otherwise the layout is taken as nested
    (class = grandparent folder, video = parent folder).
    """
    parts = [part for part in path.replace("\\", "/").split("/") if part not in ("", ".")]
    index = _class_index(parts, set(KNOWN_CLASSES if class_names is None else class_names))
    if index is None:
        raise UserError(f"cannot tell class and video of {path!r}: expected <class>/<video>/<frame> "
                        "or <class>/<video>_<frame>")
    class_name, relative = parts[index], "/".join(parts[index + 1:])
    return class_name, f"{class_name}/{video_id(class_name, relative, compile_video_pattern(video_pattern))}"


def _data_root(data_root: str) -> str:
    if not os.path.isdir(data_root):
        what = "is not a directory" if os.path.exists(data_root) else "does not exist"
        raise UserError(f"data root {data_root} {what}")
    return data_root


def _class_folders(root: str) -> list[str]:
    with os.scandir(root) as entries:
        names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    if not names:
        raise UserError(f"no class folders in data root {root} (expected e.g. Real_youtube/, FaceSwap/)")
    return names


def _select_classes(root: str, settings: ManifestSettings) -> tuple[list[str], set[str]]:
    """(class folders to scan, the real ones among them); real folders are always scanned."""
    names = _class_folders(root)
    real = {name for name in names if name in settings.real_classes}
    if not real:
        raise UserError(f"no real class folder ({', '.join(settings.real_classes) or 'none set'}) in {root}; "
                        f"found: {', '.join(names)} (set --real-classes)")
    missing = [name for name in settings.classes if name not in names]
    if missing:
        raise UserError(f"class folder(s) {', '.join(missing)} not in {root}; available: {', '.join(names)}")
    selected = sorted(set(settings.classes) | real) if settings.classes else names
    return selected, real


def _walk_error(exc: OSError) -> None:
    what = "is not a folder" if isinstance(exc, NotADirectoryError) else f"cannot be read ({exc.strerror})"
    raise UserError(f"folder {exc.filename} {what}: its frames would be silently missing; fix its permissions "
                    "or remove it from the data root")


def walk(top: str | os.PathLike) -> Iterator[tuple[str, list[str], list[str]]]:
    """`os.walk` below `top` that follows linked folders but reads every real folder once, skips hidden
    folders and visits sub-folders in name order.

    A link loop, or a second link to a folder already read, would make the same frames appear under two
    names (two "videos"), so it is refused; so is a folder that cannot be listed (its frames would be
    silently missing).
    """
    seen: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True, onerror=_walk_error):
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            _walk_error(exc)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise UserError(f"{dirpath} is the folder {seen[key]} again (a link loop or a second link to it): "
                            "every frame must be reachable by one path; remove the link")
        seen[key] = dirpath
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield dirpath, dirnames, filenames


def _image_files(top: str) -> Iterator[str]:
    """POSIX paths, relative to `top`, of the visible image files below it (read by `walk`)."""
    for dirpath, dirnames, filenames in walk(top):
        rel_dir = os.path.relpath(dirpath, top)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield prefix + name


def _target_source(ids: pd.Series, real: bool) -> tuple[pd.Series, pd.Series]:
    """FF++ ids: a real video is its own target; a fake `target_source` names both."""
    if real:
        return ids, pd.Series("", index=ids.index)
    pairs = ids.str.extract(FFPP_PAIR).fillna("")
    return pairs[0], pairs[1]


def _class_frame_table(root: str, class_name: str, real: bool, pattern: re.Pattern[str] | None) -> pd.DataFrame:
    relative = list(_image_files(os.path.join(root, class_name)))
    if not relative:
        raise UserError(f"class folder {class_name} in {root} has no images "
                        f"({'/'.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))})")
    ids = pd.Series([video_id(class_name, rel, pattern) for rel in relative], dtype=object)
    target, source = _target_source(ids, real)
    return pd.DataFrame({
        "path": [f"{class_name}/{rel}" for rel in relative],
        "label": np.int8(0 if real else 1),
        "manipulation": class_name,
        "video": class_name + "/" + ids,
        "target": target,
        "source": source,
    })


def scan(settings: ManifestSettings) -> pd.DataFrame:
    """Every frame under a class-folder data root (the ffpp layout) as a table with COLUMNS, sorted by path in natural order.

    `data.layouts.scan` is the entry point that chooses among layouts; this is the ffpp layout's frame reader.
    """
    root = _data_root(settings.data_root)
    pattern = compile_video_pattern(settings.video_pattern)
    selected, real = _select_classes(root, settings)
    tables = [_class_frame_table(root, name, name in real, pattern) for name in selected]
    frames = pd.concat(tables, ignore_index=True)
    frames = frames.iloc[sorted(range(len(frames)), key=lambda i: natural_key(frames["path"].iat[i]))]
    frames = frames.reset_index(drop=True)
    return frames.astype({"label": np.int8, **{name: str for name in STRING_COLUMNS}})[list(COLUMNS)]


def manifest_hash(df: pd.DataFrame) -> str:
    """Short sha256 of the manifest's content, so caches record exactly which frames made them."""
    hashed = HASHED_COLUMNS + ((OFFICIAL_SPLIT,) if OFFICIAL_SPLIT in df.columns else ())
    columns = [df[name].astype(str).tolist() for name in hashed]
    text = "".join("\t".join(row) + "\n" for row in zip(*columns))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]  # non-UTF-8 names: their bytes


def video_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per video (video, manipulation, label, target, source, n_frames), sorted by video."""
    table = df.groupby("video", sort=True).agg(
        manipulation=("manipulation", "first"), label=("label", "first"), target=("target", "first"),
        source=("source", "first"), n_frames=("path", "size"))
    return table.reset_index()
