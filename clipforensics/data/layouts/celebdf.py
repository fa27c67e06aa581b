"""Celeb-DF v2: Celeb-real/ and YouTube-real/ (real), Celeb-synthesis/ (fake), List_of_testing_videos.txt.

The test list is the official test split; each of its lines is cross-checked against its video's folder.
A fake `id0_id16_0000` (celebrity 16's face in video `id0_0000`) has target `id0_0000`, so it shares a
group with that real video.
"""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path
from typing import Iterable

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.layouts.base import (CLASS_WORD, FAKE, FRAMES_FOLDER, LAYOUTS, REAL, Found, listing, present,
                                             read_text, stem)
from clipforensics.data.layouts.listed import listed_layout
from clipforensics.data.manifest import OFFICIAL_SPLIT

CELEBDF_CLASSES = {"Celeb-real": REAL, "YouTube-real": REAL, "Celeb-synthesis": FAKE}
CELEBDF_TEST_LIST = "List_of_testing_videos.txt"
# List_of_testing_videos.txt has one "LABEL PATH" line per test video and no header line (reading it
# with a header drops the first video): 518 lines such as "1 YouTube-real/00170.mp4" and
# "0 Celeb-synthesis/id0_id16_0000.mp4". LABEL 1 means REAL and 0 means FAKE, the reverse of this
# tool's 0 real / 1 fake. The data set's README (github.com/yuezunli/celeb-deepfakeforensics) names the
# file without stating the convention; it is read off the file (every Celeb-real and YouTube-real line
# carries 1) and is how users of the list read it, e.g. DeepfakeBench's preprocessing/rearrange.py,
# which takes each listed video's label from its folder ('real' / 'synthesis') and ignores the digit.
# Here both are read and must agree: a line whose digit contradicts its folder is an error, never flipped.
CELEBDF_LIST_LABELS = {"1": REAL, "0": FAKE}
CELEBDF_FAKE = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")  # id0_id16_0000: id16's face in video id0_0000


def _celebdf_target(name: str, label: int) -> str:
    """The real video a video's frames come from: itself, or for id0_id16_0000 the video id0_0000."""
    match = CELEBDF_FAKE.match(name) if label == FAKE else None
    return f"{match.group(1)}_{match.group(3)}" if match else name


def _list_line(path: Path, number: int, line: str) -> tuple[str, int]:
    """(listed path, label) of one line, refused when malformed or when its digit contradicts its folder."""
    parts = line.split()
    if len(parts) != 2 or parts[0] not in CELEBDF_LIST_LABELS:
        raise UserError(f"{path} line {number}: {line.strip()!r} is not 'LABEL PATH' with LABEL 1 (real) or 0 "
                        "(fake)")
    digit, rel = parts[0], parts[1].replace("\\", "/").lstrip("./")
    folder = rel.split("/", 1)[0]
    if folder not in CELEBDF_CLASSES:
        raise UserError(f"{path} line {number}: {rel} is not in a Celeb-DF folder ({', '.join(CELEBDF_CLASSES)})")
    said, held = CELEBDF_LIST_LABELS[digit], CELEBDF_CLASSES[folder]
    if said != held:
        raise UserError(f"{path} line {number}: {digit} {rel} labels the video {CLASS_WORD[said]} (1 = real, "
                        f"0 = fake) but {folder}/ holds {CLASS_WORD[held]} videos; the list or the folder is "
                        "wrong, and labels are never flipped silently: fix the file")
    return rel, said


def read_celebdf_list(path: Path) -> dict[str, int]:
    """Listed path -> label (0 real / 1 fake), each line cross-checked against its folder."""
    listed: dict[str, int] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        rel, label = _list_line(path, number, line)
        if rel in listed:
            raise UserError(f"{path} line {number}: {rel} is listed twice")
        listed[rel] = label
    if not listed:
        raise UserError(f"{path} lists no videos")
    return listed


def _class_items(found: Found, classes: Iterable[str]) -> dict[tuple[str, str], str]:
    """(class, video name) -> listed path for the videos under the class folders: the video file when
    there is one (prepare_frames reads it), else the folder of frames."""
    wanted = set(classes)
    files: dict[tuple[str, str], str] = {}
    folders: dict[tuple[str, str], str] = {}
    for paths, table, name_of in ((found.files, files, stem), (found.frames, folders, posixpath.basename)):
        for path in sorted(paths):
            top = path.split("/", 1)[0]
            if top not in wanted:
                continue
            if path in (top, f"{top}/{FRAMES_FOLDER}"):
                raise UserError(f"frames lie directly in {path}/: this layout needs one folder per video")
            key = (top, name_of(path))
            if key in table:
                raise UserError(f"two videos named {key[1]} in {top}/: {table[key]} and {path}")
            table[key] = path
    return {key: files.get(key) or folders[key] for key in sorted(set(files) | set(folders))}


def _official_tests(root: Path, items: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """(class, video name) -> "test" for the listed test videos; a note names listed videos not present."""
    by_key = {(rel.split("/", 1)[0], stem(rel)): rel for rel in read_celebdf_list(root / CELEBDF_TEST_LIST)}
    missing = [rel for key, rel in by_key.items() if key not in items]
    if missing:
        print(f"note: {len(missing)} of {len(by_key)} videos in {CELEBDF_TEST_LIST} are not under {root} "
              f"(first: {missing[0]}): the official test set here is the {len(by_key) - len(missing)} present",
              file=sys.stderr)
    return {key: "test" for key in by_key}


def celebdf_videos(root: Path, found: Found, labels: Path | None) -> pd.DataFrame:
    """Every video under the class folders; the official split column only when the test list is there."""
    items = _class_items(found, CELEBDF_CLASSES)
    has_list = (root / CELEBDF_TEST_LIST).is_file()
    official = _official_tests(root, items) if has_list else {}
    rows = []
    for (top, name), path in sorted(items.items()):
        label = CELEBDF_CLASSES[top]
        rows.append({"listed": path, "label": label, "manipulation": top, "name": name,
                     "target": _celebdf_target(name, label), "source": "",
                     OFFICIAL_SPLIT: official.get((top, name), "")})
    table = listing(rows)
    return table if has_list else table.drop(columns=[OFFICIAL_SPLIT])


LAYOUTS.register("celebdf", listed_layout(
    "celebdf", priority=20,
    detect=lambda root: (root / CELEBDF_TEST_LIST).is_file() or all(
        (root / name).is_dir() for name in ("Celeb-real", "Celeb-synthesis")),
    videos=celebdf_videos, label_files=lambda root: present(root, CELEBDF_TEST_LIST)))
