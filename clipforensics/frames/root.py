"""The data root prepare_frames.py writes (--out): claimed, recorded, locked, and its tables and label files.

A plain run and the merge of shards finish a data root the same way, so the two give the same files:
prepare.json (the recipe, read back by extract_features.py) before any video, then faces.csv and videos.csv
merged from every finished video's parts, failed_videos.csv, and the data set's label files beside the frames.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Iterator

import pandas as pd

from clipforensics import __version__
from clipforensics.core.errors import UserError
from clipforensics.core.io import OutputDir, claim_output, exclusive_lock, remove_stale_temps, write_csv, write_json
from clipforensics.core.settings import to_dict
from clipforensics.data.crops import PREPARE_FILE
from clipforensics.data.layouts import VideoFile, copy_label_files, resolve_videos
from clipforensics.frames.detectors import package_versions
from clipforensics.frames.recipe import crop_recipe
from clipforensics.frames.settings import FrameSettings
from clipforensics.frames.tables import FACE_COLUMNS, PARTS, TABLES, VIDEO_COLUMNS, merge_parts

STAGE = "prepare_frames"
LOCK = ".prepare_frames.lock"


def claim_root(settings: FrameSettings, videos: list[VideoFile]) -> OutputDir:
    """The data root to write: ours (or new / empty), apart from the input videos, and made with these settings
    unless --overwrite; its record lists the class folders and tables this stage writes."""
    out = claim_output(settings.out, stage=STAGE, inputs=[("--videos-root", settings.videos_root)])
    previous = recorded_recipe(out)
    if previous is not None and not settings.overwrite:
        changed = [f"{k} {previous.get(k)!r} -> {v!r}" for k, v in crop_recipe(settings).items()
                   if previous.get(k) != v]
        if changed:
            raise UserError(f"{out.path} was prepared with other settings ({'; '.join(changed)}); "
                            "pass --overwrite to redo every video, or choose another --out")
    out.own(PREPARE_FILE, PARTS, *TABLES, *sorted({job.class_name for job in videos}))
    return out


def recorded_recipe(out: OutputDir) -> dict | None:
    """The recipe an earlier run recorded in this data root (an unreadable record reads as an empty one);
    None where there is none."""
    record = out.path / PREPARE_FILE
    if PREPARE_FILE not in out.entries or not record.is_file():
        return None
    try:
        previous = json.loads(record.read_text(encoding="utf-8")).get("crops", {})
    except (OSError, ValueError, AttributeError):
        previous = {}
    return previous if isinstance(previous, dict) else {}


@contextlib.contextmanager
def lock(out: Path) -> Iterator[None]:
    """One run per output folder: two would rename over each other's videos."""
    with exclusive_lock(out / LOCK, str(out)):
        yield


def record_start(out: Path, settings: FrameSettings) -> None:
    """Record the settings before any video, so a crashed run cannot be resumed with other ones."""
    if settings.overwrite:
        shutil.rmtree(out / PARTS, ignore_errors=True)
    for folder in (out / PARTS).glob("*"):
        remove_stale_temps(folder)
    write_json(out / PREPARE_FILE, {"crops": crop_recipe(settings), "settings": to_dict(settings),
                                    "packages": {**package_versions(), "clipforensics": __version__}})


def write_tables(out: Path, failed: pd.DataFrame) -> None:
    """faces.csv and videos.csv merged from every finished video, failed_videos.csv from `failed`."""
    write_csv(out / "faces.csv", merge_parts(out, "faces", FACE_COLUMNS, ["class", "video", "frame"]))
    write_csv(out / "videos.csv", merge_parts(out, "video", VIDEO_COLUMNS, ["class", "video"]))
    write_csv(out / "failed_videos.csv", failed)


def copy_labels(settings: FrameSettings, out_dir: OutputDir) -> None:
    """The data set's label files (none for class folders) beside its frames, so they are read with the same labels."""
    root = Path(settings.videos_root)
    layout = resolve_videos(root, settings.layout)
    out_dir.own(*sorted({Path(rel).parts[0] for rel in layout.label_files(root)}))
    copy_label_files(root, out_dir.path, layout)
