"""Split files: FF++ official lists in, `splits.csv` out (and in again, to reproduce a split exactly).

FF++ ships train/val/test.json, each a list of [target, source] pairs: they name ids. `splits.csv`
(video, class, group, split) is what every stage that splits writes: it names videos, so any data
root (nested, flat, partial) is reproduced exactly by passing it back as `--split-file`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.io import write_csv

SPLITS = ("train", "val", "test")
UNUSED = ""
UNUSED_NAME = "unused"
TABLE_COLUMNS = ("video", "class", "group", "split")
TABLE_NAME = "splits.csv"


class OfficialSplits(NamedTuple):
    """FF++ split lists indexed two ways: single video ids and unordered pairs."""

    ids: dict[str, str]
    pairs: dict[tuple[str, str], str]


class ListedSplits(NamedTuple):
    """What a split file decides: split by id (FF++ lists) or by video (splits.csv); used entries only."""

    path: str
    by_id: dict[str, str]
    by_video: dict[str, str]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"split file {path} not found") from None
    except OSError as exc:
        raise UserError(f"split file {path} cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"split file {path} is not valid JSON: {exc}") from None


def _read_lists(path: Path) -> dict[str, Any]:
    """The three raw lists, from a folder of train/val/test.json or a single JSON object."""
    if path.is_dir():
        return {name: _read_json(path / f"{name}.json") for name in SPLITS}
    data = _read_json(path)
    if not isinstance(data, dict) or set(data) != set(SPLITS):
        raise UserError(f"split file {path} must be a JSON object with exactly the keys train, val, test")
    return data


def _pairs(raw: Any, where: str) -> list[tuple[str, str]]:
    ok = isinstance(raw, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) and v for v in pair) for pair in raw)
    if not ok:
        raise UserError(f"split file {where} must be a list of [target, source] pairs of id strings")
    return [(pair[0], pair[1]) for pair in raw]


def _index_once(mapping: dict[Any, str], key: Any, split: str, what: str) -> None:
    """Record key -> split; a key already in another split is a leak the user must fix."""
    if mapping.setdefault(key, split) != split:
        raise UserError(f"split file lists {what} in both {mapping[key]} and {split}")


def load_split_file(path: str) -> OfficialSplits:
    """Read FF++ official splits and index them by video id and by unordered pair."""
    lists = {name: _pairs(raw, f"{path} [{name}]") for name, raw in _read_lists(Path(path)).items()}
    ids: dict[str, str] = {}
    pairs: dict[tuple[str, str], str] = {}
    for split, split_pairs in lists.items():
        for target, source in split_pairs:
            _index_once(pairs, tuple(sorted((target, source))), split, f"pair {target}_{source}")
    for split, split_pairs in lists.items():
        for target, source in split_pairs:
            _index_once(ids, target, split, f"video {target}")
            _index_once(ids, source, split, f"video {source}")
    return OfficialSplits(ids, pairs)


def read_split_table(path: str) -> dict[str, str]:
    """video -> split of the used videos of a `splits.csv` ('unused' rows only say a video was seen)."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"split file {path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"split file {path} is not a readable CSV: {exc}") from None
    missing = [c for c in ("video", "split") if c not in table.columns]
    if missing:
        raise UserError(f"split file {path} lacks column(s) {', '.join(missing)} (expected {', '.join(TABLE_COLUMNS)})")
    bad = sorted(set(table["split"]) - set(SPLITS) - {UNUSED_NAME, UNUSED})
    if bad:
        raise UserError(f"split file {path} has unknown split value(s) {', '.join(map(repr, bad))}; "
                        f"expected {', '.join(SPLITS)} or {UNUSED_NAME}")
    used = table[table["split"].isin(SPLITS)]
    twice = used.groupby("video")["split"].nunique()
    if (twice > 1).any():
        raise UserError(f"split file {path} puts video {twice[twice > 1].index[0]} in two splits")
    return dict(zip(used["video"], used["split"]))


def read_split_file(path: str) -> ListedSplits:
    """FF++ lists (a folder or .json) or a `splits.csv` written by any stage."""
    if Path(path).suffix.lower() == ".csv":
        return ListedSplits(path, {}, read_split_table(path))
    return ListedSplits(path, load_split_file(path).ids, {})


def absent_note(listed: ListedSplits, present: Iterable[str]) -> str:
    """One line naming what a split file lists that the data does not hold ('' when it holds all): such entries
    shrink the split silently otherwise. Worded as the note on Celeb-DF's test list (data.layouts.celebdf)."""
    lookup, what = (listed.by_video, "videos") if listed.by_video else (listed.by_id, "ids")
    absent = sorted(set(lookup) - set(present))
    if not absent:
        return ""
    return (f"note: {len(absent)} of {len(lookup)} {what} in {listed.path} are not in the data (first: "
            f"{', '.join(absent[:3])}): the split here uses the {len(lookup) - len(absent)} present")


def split_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per video of split manifest rows: video, class, group, split ('unused' when not used)."""
    videos = rows.drop_duplicates("video").sort_values("video", kind="stable")
    return pd.DataFrame({"video": videos["video"].to_numpy(), "class": videos["manipulation"].to_numpy(),
                         "group": videos["group"].to_numpy(),
                         "split": videos["split"].replace(UNUSED, UNUSED_NAME).to_numpy()})


def union_split_table(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Videos used by any of several protocols on one data set (the matrix's cells): where they were used."""
    every = pd.concat(tables, ignore_index=True)
    used = every[every["split"] != UNUSED_NAME]
    twice = used.groupby("video")["split"].nunique()
    if (twice > 1).any():
        raise UserError(f"video {twice[twice > 1].index[0]} is used in two splits by protocols of one run")
    used = used.drop_duplicates("video").set_index("video")["split"]
    out = every.drop_duplicates("video").sort_values("video", kind="stable").reset_index(drop=True)
    out["split"] = out["video"].map(used).fillna(UNUSED_NAME)
    return out[list(TABLE_COLUMNS)]


def write_split_table(folder: str | Path, table: pd.DataFrame) -> Path:
    """Write `splits.csv` into a stage's output folder (atomically) and return its path."""
    path = Path(folder) / TABLE_NAME
    write_csv(path, table[list(TABLE_COLUMNS)])
    return path
