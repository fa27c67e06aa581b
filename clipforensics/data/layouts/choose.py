"""Choosing a layout (by name, or `auto` from the registry's markers and priorities) and reading a root with it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Union

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.io import atomic_path
from clipforensics.core.registry import unknown_name
from clipforensics.data.layouts.base import LAYOUTS, FrameReader, Layout, VideoClasses, VideoReader
from clipforensics.data.layouts.hints import root_hint
from clipforensics.data.manifest import ManifestSettings

AUTO = "auto"
Pick = Callable[[Layout], Union[FrameReader, VideoReader, None]]
"""Which of a layout's readers is wanted: its frames reader or its videos reader."""


def frame_reader(layout: Layout) -> FrameReader | None:
    """Pick a layout's reader of frames (extraction's scanner)."""
    return layout.frames


def video_reader(layout: Layout) -> VideoReader | None:
    """Pick a layout's reader of videos (prepare_frames.py)."""
    return layout.videos


def reader_names(pick: Pick) -> list[str]:
    """The layouts that have this reader, in detection order: the choices of a --layout option."""
    return [layout.name for layout in _ordered(pick)]


def _ordered(pick: Pick) -> list[Layout]:
    """The layouts with this reader: by priority, the fallback last."""
    return sorted((layout for _, layout in LAYOUTS.items() if pick(layout)),
                  key=lambda layout: (pick(layout).fallback, layout.priority))


def _detect(root: Path, pick: Pick) -> Layout:
    """The first layout (by priority) whose marker files are in `root`, else the fallback."""
    return next(layout for layout in _ordered(pick) if pick(layout).detect(root) or pick(layout).fallback)


def _choose(root: Path, name: str, pick: Pick, kind: str) -> Layout:
    """The layout named, or detected for `auto`; a name without this kind of reader is refused."""
    if name == AUTO:
        return _detect(root, pick)
    names = reader_names(pick)
    if name not in LAYOUTS:
        raise UserError(unknown_name("layout", name, [AUTO, *names], choices=", ".join(names)))
    layout = LAYOUTS.get(name)
    if pick(layout) is None:
        raise UserError(f"layout {name!r} has no reader of {kind}; for a root of {kind} choose from "
                        f"{', '.join(names)}")
    return layout


def resolve(root: Path, name: str) -> Layout:
    """The layout of a data root of frames: `name`, or for `auto` the one detected."""
    return _choose(root, name, frame_reader, "frames")


def resolve_videos(root: Path, name: str) -> Layout:
    """The layout of a videos root (prepare_frames' input): `name`, or for `auto` the one detected."""
    return _choose(root, name, video_reader, "videos")


def _data_root(settings: ManifestSettings) -> Path:
    """The data root, refused in one line when missing."""
    if not settings.data_root:
        raise UserError("no data root given (--data-root DIR)")
    root = Path(settings.data_root)
    if not root.is_dir():
        raise UserError(f"data root {root} {'is not a directory' if root.exists() else 'does not exist'}")
    return root


def scan(settings: ManifestSettings) -> pd.DataFrame:
    """Every frame of the data root as a manifest (COLUMNS, plus `official_split` when the data set has one).

    A root that cannot be read gets a hint in the same line when it is the folder above a data root or holds
    videos instead of frames (`hints.root_hint`)."""
    root = _data_root(settings)
    layout = resolve(root, settings.layout)
    try:
        return layout.frames.scan(root, settings)
    except UserError as exc:
        markers = [layout.frames.detect for layout in _ordered(frame_reader) if not layout.frames.fallback]
        hint = root_hint(root, settings.real_classes, markers)
        if hint is None:
            raise
        raise UserError(f"{exc}; {hint}") from None


def video_files(root: Path, name: str, compression: str) -> tuple[Layout, VideoClasses]:
    """The layout of a videos root and its video files by output class (prepare_frames' input)."""
    layout = resolve_videos(root, name)
    return layout, layout.videos.find(root, compression)


def copy_label_files(root: Path, out: Path, layout: Layout) -> list[str]:
    """Copy a data set's label files (test list, metadata.json, labels.csv) beside the frames prepared from it,
    so the prepared data root is read with the same labels and official split; returns what was copied."""
    copied = []
    for rel in layout.label_files(root):
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target, suffix=target.suffix) as tmp:
            shutil.copyfile(root / rel, tmp)
        copied.append(rel)
    return copied
