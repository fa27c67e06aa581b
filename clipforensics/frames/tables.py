"""The CSVs prepare_frames.py writes (faces.csv, videos.csv, failed_videos.csv): columns, reading, merging parts.

Each finished video leaves its rows under `.parts/<class>/<video>.<kind>.csv`; the tables are the merge of
every part whose video folder exists, so a resumed run's tables cover earlier runs' videos too.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

MATRIX_COLUMNS = ("m00", "m01", "m02", "m10", "m11", "m12")
FACE_COLUMNS = ("class", "video", "frame", "detector", "score", "fallback", "face_x0", "face_y0", "face_x1",
                "face_y1", "x0", "y0", "x1", "y1", "roll", "scale", *MATRIX_COLUMNS, "landmarks5", "landmarks68")
VIDEO_COLUMNS = ("class", "video", "source", "frames_reported", "frames_read", "frames_written", "short",
                 "detected", "fallbacks", "tracks", "other_detections")
FAILED_COLUMNS = ("class", "video", "source", "reason")
STRING_COLUMNS = ("class", "video", "source", "detector", "fallback", "reason", "landmarks5", "landmarks68")
TABLES = ("faces.csv", "videos.csv", "failed_videos.csv")
PARTS = ".parts"


def read_table(path: Path) -> pd.DataFrame:
    """One of the CSVs written here, with ids kept as text ("000" stays "000"), empty text kept
    empty and empty numbers (a fallback frame's score) read as NaN."""
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={name: str for name in STRING_COLUMNS if name in header}, keep_default_na=False,
                       na_values={name: [""] for name in header if name not in STRING_COLUMNS})


def merge_parts(out: Path, kind: str, columns: tuple[str, ...], sort: list[str]) -> pd.DataFrame:
    """Concatenate the parts of every finished video in the output (this run's and earlier runs')."""
    parts = sorted((out / PARTS).glob(f"*/*.{kind}.csv"))
    tables = [read_table(p) for p in parts if (out / p.parent.name / p.name[:-len(f".{kind}.csv")]).is_dir()]
    if not tables:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(tables, ignore_index=True).sort_values(sort, kind="stable", ignore_index=True)[list(columns)]
