"""Data set layouts: how each data set names its classes, videos, labels and official test list.

One registry of manifest readers, chosen by `--layout NAME` or detected from the root's folders:

    ffpp     Real_youtube/, FaceSwap/, ... (one folder per class; FaceForensics++ and the course subsets)
    celebdf  Celeb-real/, YouTube-real/ (real), Celeb-synthesis/ (fake), List_of_testing_videos.txt
    dfdc     DFDC parts (dfdc_train_part_N/metadata.json) or DFDC-preview (dataset.json)
    csv      labels.csv: path (image, frame folder or video file), label [, video, manipulation, group, split]

Every layout except ffpp lists *videos*: each one is found either as a video file (what
prepare_frames.py reads) or as a folder of frames at the same place (what extraction reads), so a data
set's own label files work on its videos and on the frames prepared from them. A listed video
`A/B/name.mp4` is looked for as frames in `A/B/name/` (same path, no extension), `A/name/` (what
prepare_frames.py writes) and `A/frames/name/` (DeepfakeBench's rearranged trees).

A layout may carry an official split per video (`official_split`: train, val, test or empty): Celeb-DF's
test list, DFDC-preview's `set`, a CSV's `split` column. It is stored in the cache, so a cache tested on
elsewhere can use exactly its official test videos.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.io import atomic_path
from clipforensics.core.registry import Registry
from clipforensics.data.manifest import (COLUMNS, IMAGE_EXTENSIONS, OFFICIAL_SPLIT, STRING_COLUMNS,
                                         ManifestSettings, walk)
from clipforensics.data.manifest import scan as scan_ffpp

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv"})
OFFICIAL_SPLITS = ("train", "val", "test")
AUTO = "auto"
FRAMES_FOLDER = "frames"  # DeepfakeBench keeps a data set's frames in <class>/frames/<video>/
REAL, FAKE = 0, 1


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


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]


# ---------------------------------------------------------------- the listing every layout returns


LISTING_COLUMNS = ("listed", "label", "manipulation", "name", "target", "source", OFFICIAL_SPLIT)
"""One row per labelled video: `listed` is its path as its label file names it (a video file, or a
folder of frames), `name` its id inside its class; target/source the ids of the videos it was made from."""


def listing(rows: Iterable[dict]) -> pd.DataFrame:
    table = pd.DataFrame(list(rows), columns=list(LISTING_COLUMNS))
    return table.fillna("").astype({c: str for c in LISTING_COLUMNS if c != "label"})


def listing_with_splits(rows: Iterable[dict]) -> pd.DataFrame:
    """The listing, with its official split column only where some video has an official split."""
    table = listing(rows)
    return table if (table[OFFICIAL_SPLIT] != "").any() else table.drop(columns=[OFFICIAL_SPLIT])


def present(root: Path, *names: str) -> list[str]:
    """Those of `names` that are files in `root`: a layout's label files."""
    return [name for name in names if (root / name).is_file()]


@dataclass(frozen=True)
class Layout:
    """How one data set is laid out: what it is, how to detect it, and how its videos are labelled."""

    name: str
    title: str
    folders: str
    detect: Callable[[Path], bool]
    videos: Callable[[Path, Found], pd.DataFrame] | None
    """The labelled videos of a root (None: the ffpp reader scans class folders itself)."""
    label_files: Callable[[Path], list[str]] = lambda root: []
    """Files a prepared data root needs beside its frames (the test list, metadata.json): copied by prepare_frames."""


LAYOUTS: Registry[Layout] = Registry("layout")


def layout_names() -> tuple[str, ...]:
    return tuple(LAYOUTS.names())


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def _read_json(path: Path) -> object:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None


# ---------------------------------------------------------------- Celeb-DF v2

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
_CLASS_WORD = {REAL: "real", FAKE: "fake"}


def _celebdf_target(name: str, label: int) -> str:
    """The real video a video's frames come from: itself, or for id0_id16_0000 the video id0_0000."""
    match = CELEBDF_FAKE.match(name) if label == FAKE else None
    return f"{match.group(1)}_{match.group(3)}" if match else name


def read_celebdf_list(path: Path) -> dict[str, int]:
    """Listed path -> label (0 real / 1 fake), each line cross-checked against its folder."""
    listed: dict[str, int] = {}
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in CELEBDF_LIST_LABELS:
            raise UserError(f"{path} line {number}: {line.strip()!r} is not 'LABEL PATH' with LABEL 1 (real) or 0 "
                            "(fake)")
        digit, rel = parts[0], parts[1].replace("\\", "/").lstrip("./")
        folder = rel.split("/", 1)[0]
        if folder not in CELEBDF_CLASSES:
            raise UserError(f"{path} line {number}: {rel} is not in a Celeb-DF folder "
                            f"({', '.join(CELEBDF_CLASSES)})")
        said, held = CELEBDF_LIST_LABELS[digit], CELEBDF_CLASSES[folder]
        if said != held:
            raise UserError(f"{path} line {number}: {digit} {rel} labels the video {_CLASS_WORD[said]} (1 = real, "
                            f"0 = fake) but {folder}/ holds {_CLASS_WORD[held]} videos; the list or the folder is "
                            "wrong, and labels are never flipped silently: fix the file")
        if rel in listed:
            raise UserError(f"{path} line {number}: {rel} is listed twice")
        listed[rel] = said
    if not listed:
        raise UserError(f"{path} lists no videos")
    return listed


def _class_items(found: Found, classes: Iterable[str]) -> dict[tuple[str, str], str]:
    """(class, video name) -> listed path for the videos under the class folders: the video file when
    there is one (prepare_frames reads it), else the folder of frames."""
    wanted = set(classes)
    files: dict[tuple[str, str], str] = {}
    folders: dict[tuple[str, str], str] = {}
    for paths, table, name_of in ((found.files, files, _stem), (found.frames, folders, posixpath.basename)):
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


def celebdf_videos(root: Path, found: Found) -> pd.DataFrame:
    items = _class_items(found, CELEBDF_CLASSES)
    test_list = root / CELEBDF_TEST_LIST
    official = {}
    if test_list.is_file():
        by_key = {(rel.split("/", 1)[0], _stem(rel)): rel for rel in read_celebdf_list(test_list)}
        official = {key: "test" for key in by_key}
        missing = [rel for key, rel in by_key.items() if key not in items]
        if missing:
            print(f"note: {len(missing)} of {len(by_key)} videos in {CELEBDF_TEST_LIST} are not under {root} "
                  f"(first: {missing[0]}): the official test set here is the {len(by_key) - len(missing)} present",
                  file=sys.stderr)
    rows = []
    for (top, name), path in sorted(items.items()):
        label = CELEBDF_CLASSES[top]
        rows.append({"listed": path, "label": label, "manipulation": top, "name": name,
                     "target": _celebdf_target(name, label), "source": "",
                     OFFICIAL_SPLIT: official.get((top, name), "")})
    table = listing(rows)
    if not test_list.is_file():
        table = table.drop(columns=[OFFICIAL_SPLIT])
    return table


LAYOUTS.register("celebdf", Layout(
    "celebdf", "Celeb-DF v2",
    "Celeb-real/ and YouTube-real/ (real), Celeb-synthesis/ (fake), List_of_testing_videos.txt (official test list)",
    detect=lambda root: (root / CELEBDF_TEST_LIST).is_file() or all(
        (root / name).is_dir() for name in ("Celeb-real", "Celeb-synthesis")),
    videos=celebdf_videos,
    label_files=lambda root: present(root, CELEBDF_TEST_LIST)))


# ---------------------------------------------------------------- DFDC and DFDC-preview

DFDC_METADATA = "metadata.json"  # per part folder: {"abc.mp4": {"label": "FAKE", "split": "train", "original": "x.mp4"}}
DFDC_PREVIEW = "dataset.json"    # at the root: {"method_A/.../abc.mp4": {"label": "fake", "set": "test"}, ...}
DFDC_LABELS = {"real": REAL, "fake": FAKE}


def _metadata_files(root: Path) -> list[str]:
    files = present(root, DFDC_METADATA)
    with os.scandir(root) as entries:
        parts = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    return files + [f"{part}/{DFDC_METADATA}" for part in parts if (root / part / DFDC_METADATA).is_file()]


def _dfdc_entry(source: Path, key: str, value: object) -> tuple[int, str]:
    """(label, official split) of one metadata record; anything unreadable is an error naming it."""
    if not isinstance(value, dict) or str(value.get("label", "")).lower() not in DFDC_LABELS:
        raise UserError(f"{source}: entry {key!r} has no label REAL or FAKE")
    split = str(value.get("split", value.get("set", "")) or "").lower()
    if split and split not in OFFICIAL_SPLITS:
        raise UserError(f"{source}: entry {key!r} has split {split!r}; expected one of {', '.join(OFFICIAL_SPLITS)}")
    return DFDC_LABELS[str(value["label"]).lower()], split


def dfdc_videos(root: Path, found: Found) -> pd.DataFrame:
    rows = []
    for rel in _metadata_files(root):
        data = _read_json(root / rel)
        if not isinstance(data, dict):
            raise UserError(f"{root / rel} is not a JSON object of video name -> record")
        part = posixpath.dirname(rel)
        for key, value in data.items():
            label, split = _dfdc_entry(root / rel, key, value)
            original = value.get("original") or ""
            name = _stem(key)
            rows.append({"listed": f"{part}/{key}" if part else key, "label": label,
                         "manipulation": "DFDC-" + _CLASS_WORD[label], "name": name,
                         "target": _stem(original) if label == FAKE and original else name, "source": "",
                         OFFICIAL_SPLIT: split})
    if (root / DFDC_PREVIEW).is_file():
        data = _read_json(root / DFDC_PREVIEW)
        if not isinstance(data, dict):
            raise UserError(f"{root / DFDC_PREVIEW} is not a JSON object of video path -> record")
        for key, value in data.items():
            label, split = _dfdc_entry(root / DFDC_PREVIEW, key, value)
            rel = key.replace("\\", "/")
            rows.append({"listed": rel, "label": label, "manipulation": rel.split("/", 1)[0], "name": _stem(rel),
                         "target": _stem(rel) if label == REAL else "", "source": "", OFFICIAL_SPLIT: split})
    if not rows:
        raise UserError(f"no {DFDC_METADATA} (in {root} or its part folders) and no {DFDC_PREVIEW} in {root}")
    return listing_with_splits(rows)


LAYOUTS.register("dfdc", Layout(
    "dfdc", "DFDC / DFDC-preview",
    "dfdc_train_part_N/ with metadata.json (DFDC) or dataset.json at the root (DFDC-preview: method_A/, "
    "method_B/, original_videos/)",
    detect=lambda root: (root / DFDC_PREVIEW).is_file() or bool(_metadata_files(root)),
    videos=dfdc_videos,
    label_files=lambda root: _metadata_files(root) + present(root, DFDC_PREVIEW)))


# ---------------------------------------------------------------- a generic labelled list

CSV_FILE = "labels.csv"
CSV_LABELS = {"0": REAL, "1": FAKE, "real": REAL, "fake": FAKE}
CSV_OPTIONAL = ("video", "manipulation", "group", "split")


def _csv_rows(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise UserError(f"{path} needs columns path and label (missing: {', '.join(missing)}); optional: "
                        f"{', '.join(CSV_OPTIONAL)}")
    if table.empty:
        raise UserError(f"{path} has no rows")
    for column in CSV_OPTIONAL:
        if column not in table.columns:
            table[column] = ""
    return table


def csv_videos(root: Path, found: Found, labels_file: Path | None = None) -> pd.DataFrame:
    """One listing row per CSV row; image rows of one video are grouped by the manifest step."""
    path = labels_file or root / CSV_FILE
    table = _csv_rows(path)
    rows = []
    for number, row in enumerate(table.itertuples(index=False), start=2):
        label = CSV_LABELS.get(row.label.strip().lower())
        if label is None:
            raise UserError(f"{path} line {number}: label {row.label!r} is not 0/real or 1/fake")
        split = row.split.strip().lower()
        if split not in OFFICIAL_SPLITS + ("",):
            raise UserError(f"{path} line {number}: split {row.split!r} is not train, val, test or empty")
        rel = row.path.strip().replace("\\", "/").lstrip("./")
        if not rel:
            raise UserError(f"{path} line {number}: empty path")
        is_image = posixpath.splitext(rel)[1].lower() in IMAGE_EXTENSIONS
        video = row.video.strip() or (posixpath.dirname(rel) if is_image else posixpath.splitext(rel)[0])
        if not video:
            raise UserError(f"{path} line {number}: image {rel} lies in no folder; give its video in a 'video' column")
        group = row.group.strip()
        rows.append({"listed": rel, "label": label, "manipulation": row.manipulation.strip() or _CLASS_WORD[label],
                     "name": video, "target": group or (video if label == REAL else ""),
                     "source": group if label == FAKE else "", OFFICIAL_SPLIT: split})
    return listing_with_splits(rows)


LAYOUTS.register("csv", Layout(
    "csv", "a labelled list",
    "labels.csv at the root (or --labels FILE): path (image, folder of frames or video file, relative to the "
    "root), label (0/real, 1/fake), optional video, manipulation, group, split (train/val/test)",
    detect=lambda root: (root / CSV_FILE).is_file(),
    videos=csv_videos,
    label_files=lambda root: present(root, CSV_FILE)))


LAYOUTS.register("ffpp", Layout(
    "ffpp", "FaceForensics++ frames",
    "Real_youtube/ (real; --real-classes for others) and one folder per manipulation (FaceSwap/, "
    "NeuralTextures/, ...), frames nested by video or flat <video>_<frame>.png",
    detect=lambda root: True, videos=None))


# ---------------------------------------------------------------- choosing and reading


DETECTION_ORDER = ("csv", "celebdf", "dfdc", "ffpp")
"""`auto` takes the first layout whose marker files are in the root; ffpp is the fallback."""
DATASET_LAYOUTS = ("celebdf", "dfdc", "csv")
"""The layouts that list labelled videos (files or frame folders); prepare_frames reads their videos."""


def detect_dataset_layout(root: Path) -> str | None:
    """The data set layout whose marker files (test list, metadata, labels.csv) are in `root`, if any."""
    return next((name for name in DETECTION_ORDER if name in DATASET_LAYOUTS and LAYOUTS.get(name).detect(root)),
                None)


def copy_label_files(root: Path, out: Path, name: str) -> list[str]:
    """Copy a data set's label files (test list, metadata.json, labels.csv) beside the frames prepared from it,
    so the prepared data root is read with the same labels and official split; returns what was copied."""
    copied = []
    for rel in LAYOUTS.get(name).label_files(root):
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target, suffix=target.suffix) as tmp:
            shutil.copyfile(root / rel, tmp)
        copied.append(rel)
    return copied


def resolve(root: Path, name: str) -> Layout:
    if name != AUTO:
        return LAYOUTS.get(name)
    return next(LAYOUTS.get(n) for n in DETECTION_ORDER if LAYOUTS.get(n).detect(root))


def _data_root(settings: ManifestSettings) -> Path:
    if not settings.data_root:
        raise UserError("no data root given (--data-root DIR)")
    root = Path(settings.data_root)
    if not root.is_dir():
        raise UserError(f"data root {root} {'is not a directory' if root.exists() else 'does not exist'}")
    return root


def labelled_videos(layout: Layout, root: Path, found: Found, settings: ManifestSettings) -> pd.DataFrame:
    if layout.name == "csv":
        return csv_videos(root, found, Path(settings.labels) if settings.labels else None)
    return layout.videos(root, found)


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
    if not settings.classes:
        return manifest
    present = set(manifest["manipulation"])
    missing = [name for name in settings.classes if name not in present]
    if missing:
        raise UserError(f"class(es) {', '.join(missing)} not in the data set; available: {', '.join(sorted(present))}")
    keep = manifest["manipulation"].isin(settings.classes) | (manifest["label"] == REAL)
    return manifest[keep].reset_index(drop=True)


def scan(settings: ManifestSettings) -> pd.DataFrame:
    """Every frame of the data root as a manifest (COLUMNS, plus `official_split` when the data set has one)."""
    root = _data_root(settings)
    layout = resolve(root, settings.layout)
    if layout.videos is None:
        return scan_ffpp(settings)
    found = find(root)
    videos = labelled_videos(layout, root, found, settings)
    return _select(_to_manifest(_frame_rows(videos, found, root)), settings)


@dataclass(frozen=True)
class VideoFile:
    """One labelled video file to prepare: frames go to <class_name>/<video>/ in the output."""

    class_name: str
    video: str
    source: Path


def video_files(root: Path, name: str) -> list[VideoFile]:
    """The labelled video files of a videos root in layout `name` (prepare_frames' input), name order."""
    layout = resolve(root, name)
    if layout.videos is None:
        raise UserError(f"layout {layout.name} lists no video files here")
    found = find(root)
    videos = labelled_videos(layout, root, found, ManifestSettings(data_root=str(root), layout=layout.name))
    listed = [row.listed for row in videos.itertuples(index=False) if row.listed in found.files]
    loose = [path for path in listed if "/" not in path]
    if loose:
        raise UserError(f"video file {loose[0]} lies directly in {root}: put videos in a folder (its frames go to "
                        "<folder>/<name>/)")
    files = [VideoFile(path.split("/", 1)[0], _stem(path), root / path) for path in listed]
    return sorted(files, key=lambda f: (f.class_name, f.video))
