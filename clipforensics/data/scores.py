"""The scores table: the one interface between every scorer and the evaluator.

Columns: path, video, manipulation, label (0 real / 1 fake), split, score (probability of fake); optional
`dataset`, the data set of each row, when a run is tested on several (data.crossdata): path and video
are unique within a data set, and the evaluator reports each data set's test rows separately.
A scores file is `scores.csv` with `scores.json` beside it (the settings that made it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from clipforensics.core.io import write_csv, write_json
from clipforensics.core.errors import UserError
from clipforensics.data.manifest import KNOWN_MANIPULATIONS, video_of

SCORE_COLUMNS = ("path", "video", "manipulation", "label", "split", "score")
DATASET = "dataset"
SCORES = "scores.csv"  # every run's scored val and test rows, in a run or head folder


def _columns(df: pd.DataFrame) -> list[str]:
    """The scores columns of a table: SCORE_COLUMNS, plus `dataset` when the table has it."""
    return list(SCORE_COLUMNS) + ([DATASET] if DATASET in df.columns else [])


def require_columns(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """A clear error up front instead of a KeyError deep inside a plot or a metric."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"{what}: scores table lacks column(s) {', '.join(missing)}")


def check_scores_table(df: pd.DataFrame, what: str) -> None:
    """Every scores column present and at least one row."""
    require_columns(df, SCORE_COLUMNS, what)
    if df.empty:
        raise UserError(f"{what}: scores table has no rows")


def make_scores(rows: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """A scores table for manifest rows (which carry a `split` column) and their fake probabilities."""
    out = rows[[c for c in _columns(rows) if c != "score"]].reset_index(drop=True).copy()
    out["label"] = out["label"].astype(int)
    out["score"] = np.asarray(scores, dtype=float)
    return out


def write_scores(out_dir: str | Path, table: pd.DataFrame, settings: Mapping[str, Any]) -> Path:
    """Write `scores.csv` and `scores.json` atomically; return the CSV path."""
    out_dir = Path(out_dir)
    path = out_dir / SCORES
    write_csv(path, table[_columns(table)])
    write_json(out_dir / "scores.json", dict(settings))
    return path


SPLITS = ("train", "val", "test")


def read_settings(scores_path: str | Path) -> dict[str, Any]:
    """The settings saved beside a scores file ({} for an external file without them).

    Only a JSON object that a scorer of this tool wrote counts (it records a `scorer`); any other
    same-stem JSON (another tool's, a user's notes) is not ours and is ignored. The cache it names must still be
    the one it records (`cache_identity`): the report's provenance is read from that cache.
    """
    side = Path(scores_path).with_suffix(".json")
    if not side.is_file() or side == Path(scores_path):
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or "scorer" not in data:
        return {}
    from clipforensics.data.provenance import check_recorded_cache  # here: h5py stays out of the parsers' imports

    check_recorded_cache(data, str(side))
    return data


def _text_column(df: pd.DataFrame, column: str, path: Path) -> None:
    """A text column whose every value is a non-empty string (JSON gives numbers and nulls too)."""
    values = df[column]
    bad = values.isna() | ~values.map(lambda v: isinstance(v, str) and v != "")
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{path}: {int(bad.sum())} row(s) have no text in column {column!r} "
                        f"(first: row {first + 1}, value {values.iloc[first]!r})")


def _check_rows(df: pd.DataFrame, path: Path) -> None:
    """Every frame once, known splits, and each video in one class: otherwise metrics are silently wrong.

    Paths and videos are unique within a data set (the `dataset` column, when there is one)."""
    splits = set(df["split"]) - set(SPLITS)
    if splits:
        raise UserError(f"{path}: unknown split value(s) {sorted(splits)[:5]}; use {', '.join(SPLITS)}")
    scope = [DATASET] if DATASET in df.columns else []
    dup = df.duplicated([*scope, "path"], keep=False)
    if dup.any():
        raise UserError(f"{path}: {int(df.loc[dup, 'path'].nunique())} path(s) appear more than once "
                        f"(first: {df.loc[dup, 'path'].iloc[0]}); score each frame once")
    kinds = df.groupby([*scope, "video"])["manipulation"].nunique()
    if (kinds > 1).any():
        key = kinds[kinds > 1].index[0]
        video = key[-1] if isinstance(key, tuple) else key
        manips = sorted(df.loc[df["video"] == video, "manipulation"].unique())
        raise UserError(f"{path}: video {video!r} has frames of several manipulations ({', '.join(manips)}); "
                        "video ids must name one video of one class")


def check_labels(df: pd.DataFrame, path: Path, real_classes: tuple[str, ...]) -> None:
    """A row's class folder and its label must agree: labels are never flipped silently (as in Celeb-DF's list)."""
    wrong = df[(df["manipulation"].isin(real_classes) & (df["label"] == 1))
               | (df["manipulation"].isin(set(KNOWN_MANIPULATIONS) - set(real_classes)) & (df["label"] == 0))]
    if len(wrong):
        first = wrong.iloc[0]
        kind = "a real class" if first["manipulation"] in real_classes else "a manipulation"
        raise UserError(f"{path}: {len(wrong)} rows contradict their class folder (first: {first['path']} in "
                        f"{first['manipulation']}, {kind}, labelled {first['label']}); labels are never flipped "
                        "silently: fix the file, or name the real classes with --real-classes")


def read_scores(path: str | Path, *, class_names: list[str] | None = None, video_pattern: str | None = None,
                real_classes: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Read a scores table from CSV or a JSON list of records (ours or another tool's).

    Required: path, score, label. A missing `video` or `manipulation` is read from the path as the
    manifest does (Windows backslashes included); a column the file gives is used as given, never
    replaced. A missing `split` makes every row test. With `real_classes`, a row whose class folder contradicts
    its label (a real class labelled 1, a known manipulation labelled 0) is refused, never evaluated as given.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"scores file not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            records = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ValueError("expected a JSON list of records ({\"path\": ..., \"score\": ..., \"label\": ...})")
            df = pd.DataFrame(records)
        else:
            df = pd.read_csv(path, dtype={"path": str, "video": str, "manipulation": str, "split": str, DATASET: str},
                             keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UserError(f"cannot read scores from {path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in ("path", "score", "label") if c not in df.columns]
    if missing or df.empty:
        raise UserError(f"{path}: needs columns path, score, label (missing: {', '.join(missing) or 'rows'})")
    given = [c for c in ("video", "manipulation", "split", DATASET) if c in df.columns]
    for column in ["path", *given]:
        _text_column(df, column, path)
    if "video" not in df.columns or "manipulation" not in df.columns:
        keys = [video_of(p, class_names=class_names, video_pattern=video_pattern) for p in df["path"]]
        if "manipulation" not in df.columns:
            df["manipulation"] = [k[0] for k in keys]
        if "video" not in df.columns:
            df["video"] = [k[1] for k in keys]
    if "split" not in df.columns:
        df["split"] = "test"
    try:
        df["score"] = pd.to_numeric(df["score"], errors="coerce")
        df["label"] = pd.to_numeric(df["label"], errors="coerce")
    except (TypeError, ValueError):
        raise UserError(f"{path}: every row needs a numeric score and a label of 0 or 1") from None
    if df["score"].isna().any() or not df["label"].isin([0, 1]).all():
        raise UserError(f"{path}: every row needs a numeric score and a label of 0 or 1")
    df["label"] = df["label"].astype(int)
    _check_rows(df, path)
    if real_classes is not None:
        check_labels(df, path, real_classes)
    return df[_columns(df)]
