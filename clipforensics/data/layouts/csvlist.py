"""A labelled list: labels.csv at the root (or --labels FILE) with columns path and label.

`path` is an image, a folder of frames or a video file, relative to the root; `label` 0/real or 1/fake;
optional `video`, `manipulation`, `group` (both ids of a video, so a group shares its split) and `split`
(train/val/test: the official split). Its layout name is `csv`.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.layouts.base import (CLASS_WORD, FAKE, LAYOUTS, OFFICIAL_SPLITS, REAL, Found,
                                             listing_with_splits, present)
from clipforensics.data.layouts.listed import listed_layout
from clipforensics.data.manifest import IMAGE_EXTENSIONS, OFFICIAL_SPLIT

CSV_FILE = "labels.csv"
CSV_LABELS = {"0": REAL, "1": FAKE, "real": REAL, "fake": FAKE}
CSV_OPTIONAL = ("video", "manipulation", "group", "split")


def _csv_rows(path: Path) -> pd.DataFrame:
    """The CSV as text, with every optional column (empty when absent)."""
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


def _listing_row(path: Path, number: int, row: tuple) -> dict:
    """One CSV row as a listed video, every value checked."""
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
    return {"listed": rel, "label": label, "manipulation": row.manipulation.strip() or CLASS_WORD[label],
            "name": video, "target": group or (video if label == REAL else ""),
            "source": group if label == FAKE else "", OFFICIAL_SPLIT: split}


def csv_videos(root: Path, found: Found, labels: Path | None) -> pd.DataFrame:
    """One listing row per CSV row (of --labels FILE when given); image rows of one video are grouped later."""
    path = labels or root / CSV_FILE
    rows = [_listing_row(path, number, row)
            for number, row in enumerate(_csv_rows(path).itertuples(index=False), start=2)]
    return listing_with_splits(rows)


LAYOUTS.register("csv", listed_layout(
    "csv", priority=10, detect=lambda root: (root / CSV_FILE).is_file(),
    videos=csv_videos, label_files=lambda root: present(root, CSV_FILE)))
