"""Celeb-DF++ (Celeb-DF v3, DeepfakeBench's `Celeb-DF-v3`): Celeb-DF v2's real folders and 22 fake methods.

As the data set's README (github.com/OUC-VAS/Celeb-DF-PP) ships it: Celeb-real/ and YouTube-real/ (real),
Celeb-synthesis/<scenario>/<method>/<video>.mp4 (fake; scenarios FaceSwap, FaceReenact, TalkingFace, the
original Celeb-DF fakes under FaceSwap/Celeb-DF-v2) and List_of_testing_videos.txt: "LABEL PATH" lines as in
Celeb-DF v2 (1 = real, 0 = fake; each cross-checked against its folder), fakes listed as
Celeb-synthesis/<scenario>/<method>/<video>.mp4, the official test set (178 real videos, 200 or 300 per method).
DeepfakeBench's rearrange.py (the Celeb-DF-PP repository's copy) reads frames in <folder>/frames/<video>/ and
<scenario>/<method>/frames/<video>/; both are read here too. Each method is one manipulation, and
prepare_frames.py writes a method's videos to <method>/<video>/ (one video name is used by several methods).
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.layouts.base import (FAKE, FRAMES_FOLDER, LAYOUTS, REAL, Found, FrameReader, Layout,
                                             VideoClasses, VideoFile, VideoReader, find, listing, present, read_text,
                                             stem)
from clipforensics.data.layouts.celebdf import CELEBDF_CLASSES, CELEBDF_LIST_LABELS, CELEBDF_TEST_LIST, _celebdf_target
from clipforensics.data.layouts.listed import listed_frames
from clipforensics.data.manifest import OFFICIAL_SPLIT

FAKES = "Celeb-synthesis"
SCENARIOS = ("FaceSwap", "FaceReenact", "TalkingFace")
REALS = tuple(name for name, label in CELEBDF_CLASSES.items() if label == REAL)
Key = tuple[str, str]  # (class: a real folder or a fake method, video name)


def _key(path: str) -> Key | None:
    """(class, video) of a video file or folder of frames, in the download tree or as prepare_frames wrote it."""
    parts = [p for p in posixpath.splitext(path)[0].split("/") if p != FRAMES_FOLDER]
    if parts[0] in REALS and len(parts) == 2:
        return parts[0], parts[1]
    if parts[0] == FAKES and len(parts) == 4 and parts[1] in SCENARIOS:
        return parts[2], parts[3]
    if parts[0] not in REALS and parts[0] != FAKES and len(parts) == 2:
        return parts[0], parts[1]
    return None


def _items(found: Found) -> dict[Key, str]:
    """(class, video) -> its path: the video file when there is one (prepare_frames reads it), else the frames."""
    items: dict[Key, str] = {}
    for path in sorted(found.frames) + sorted(found.files):
        key = _key(path)
        if key is not None and (key not in items or path in found.files):
            items[key] = path
    return items


def _list(path: Path) -> dict[Key, int]:
    """(class, video) -> label of every line of the test list; a line whose digit contradicts its folder is refused."""
    listed: dict[Key, int] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        key = _key(parts[-1].replace("\\", "/").lstrip("./")) if len(parts) == 2 else None
        if key is None or parts[0] not in CELEBDF_LIST_LABELS:
            raise UserError(f"{path} line {number}: {line.strip()!r} is not 'LABEL PATH' with LABEL 1 (real) or 0 "
                            f"(fake) and PATH in {', '.join(REALS)}/ or {FAKES}/<scenario>/<method>/")
        held = REAL if key[0] in REALS else FAKE
        if CELEBDF_LIST_LABELS[parts[0]] != held:
            raise UserError(f"{path} line {number}: {line.strip()!r}: the digit contradicts the folder (1 = real, "
                            "0 = fake); labels are never flipped silently: fix the file")
        listed[key] = held
    return listed


def celebdfpp_videos(root: Path, found: Found, labels: Path | None) -> pd.DataFrame:
    """Every real and fake video; the official split column only when the test list is there."""
    items = _items(found)
    has_list = (root / CELEBDF_TEST_LIST).is_file()
    tests = _list(root / CELEBDF_TEST_LIST) if has_list else {}
    rows = []
    for (cls, name), path in sorted(items.items()):
        label = REAL if cls in REALS else FAKE
        rows.append({"listed": path, "label": label, "manipulation": cls, "name": name,
                     "target": _celebdf_target(name, label), "source": "",
                     OFFICIAL_SPLIT: "test" if (cls, name) in tests else ""})
    if not rows:
        raise UserError(f"no Celeb-DF++ videos in {root} ({', '.join(REALS)}/, {FAKES}/<scenario>/<method>/)")
    table = listing(rows)
    return table if has_list else table.drop(columns=[OFFICIAL_SPLIT])


def celebdfpp_files(root: Path, compression: str) -> VideoClasses:
    """The video files by output class: a real folder, or a fake's method (one folder per method)."""
    by_class: VideoClasses = {}
    for (cls, name), path in sorted(_items(find(root)).items()):
        if posixpath.splitext(path)[1]:
            by_class.setdefault(cls, []).append(VideoFile(cls, stem(path), root / path))
    return by_class


def _is_celebdfpp(root: Path) -> bool:
    """Celeb-synthesis/ split into scenario folders (Celeb-DF v2 keeps its fakes directly in it)."""
    return any((root / FAKES / scenario).is_dir() for scenario in SCENARIOS)


def _prepared(root: Path) -> bool:
    """Frames written from Celeb-DF++: the real folders and a test list naming scenario folders."""
    listed = root / CELEBDF_TEST_LIST
    return _is_celebdfpp(root) or (listed.is_file() and any(f" {FAKES}/{scenario}/" in read_text(listed)
                                                            for scenario in SCENARIOS))


LAYOUTS.register("celebdfpp", Layout(
    "celebdfpp", priority=15,
    frames=FrameReader(listed_frames(celebdfpp_videos), _prepared),
    videos=VideoReader(celebdfpp_files, _is_celebdfpp),
    label_files=lambda root: present(root, CELEBDF_TEST_LIST)))
