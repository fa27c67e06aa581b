"""Train/val/test splits by group of videos, never by frame, decided from the manifest alone.

Videos that share frame content form one group (`data.groups`): a real video, every fake made from
it (both directions, every manipulation) and, transitively, the videos those fakes were made from,
whether or not those real videos are in the data root. A group's split comes from a hash of the seed
and its key, from a split file, or from the data set's own official split (`data.official`); it does not depend on which manipulations train or test, so every
stage (heads, LoRA, each cell of the matrix) sees the same groups in the same splits. Every video of
a group lands in its group's split or is not used at all: training-manipulation fakes are used in
train and val groups, test-manipulation fakes in test groups, a manipulation that is both everywhere.
So no frame content of a test video was ever trained on or used for selection.

The options of other data sets to test on (`CrossSettings`) are declared here too, light like the protocol's
(`data.crossdata` loads those data sets), so a script parses them before loading h5py.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from typing import Callable, NamedTuple

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.sampling import sample_frames
from clipforensics.core.settings import option
from clipforensics.data.groups import video_groups, video_ids
from clipforensics.data.manifest import OFFICIAL_SPLIT, video_table
from clipforensics.data.official import official_group_splits
from clipforensics.data.splitfile import (SPLITS, UNUSED, ListedSplits, absent_note, load_split_file,
                                          read_split_file, split_table)

__all__ = ["CrossSettings", "ProtocolSettings", "Splits", "assign_splits", "check_splits", "load_split_file",
           "make_splits", "parse_real_split", "resolve_fakes", "split_summary", "split_table", "video_uniform"]

REST = "rest"
MIN_GROUPS = 5
"""A class with at least this many groups gets at least one group in val and in test (when their share > 0)."""
_CLASS_NAMES = {0: "real", 1: "fake"}


@dataclass
class ProtocolSettings:
    """Which manipulations train and test, and how groups of videos are divided (FaceSwap -> NeuralTextures)."""

    train_fakes: tuple[str, ...] = option(("FaceSwap",), "manipulation(s) seen in training")
    test_fakes: tuple[str, ...] = option(
        ("NeuralTextures",), "manipulation(s) tested on; 'rest' = every manipulation not trained on")
    real_split: str = option("70/10/20", "train/val/test percentages of video groups (a real video with every "
                                         "fake made from it, and the videos those fakes were made from)")
    split_seed: int = option(0, "seed of the group hash")
    split_file: str | None = option(
        None, "a splits.csv written by any stage (exact reproduction), or FF++ official splits: a folder with "
              "train.json/val.json/test.json, or one JSON {train: [...], val: [...], test: [...]} (lists of "
              "[target, source] pairs)", metavar="PATH")
    frames_per_video: int | None = option(None, "use at most N frames per video, spread evenly in frame-number order (the middle one for 1)", metavar="N")


TEST_ROWS = ("official", "all")


@dataclass
class CrossSettings:
    """Other data sets to test on: options of fit_heads.py, finetune_lora.py and `evaluate.py matrix`. Declared
    here, beside the protocol and light like it; `data.crossdata` loads and checks those data sets."""

    test_cache: tuple[str, ...] = option(
        (), "cache of another data set to test on, made with the same model, weights and preprocessing "
            "(repeat the flag or give a comma list); each is reported as its own test set", metavar="FILE")
    test_rows: str = option("official", "rows of each --test-cache that are tested: official (its official test "
                                        "list when its layout has one, else all of it) or all", choices=TEST_ROWS)


class Move(NamedTuple):
    """A group moved from its hashed split so that a small split holds every class."""

    group: str
    source: str
    target: str
    reason: str


@dataclass
class Splits:
    """The split manifest rows (with `split` and `group` columns) and what deciding them took."""

    rows: pd.DataFrame
    moves: list[Move]
    absent: str = ""  # what a --split-file lists that the data does not hold (splitfile.absent_note)

    def table(self) -> pd.DataFrame:
        """One row per video: video, class, group, split (the content of `splits.csv`)."""
        return split_table(self.rows)

    def digest(self) -> str:
        """Short sha256 of every video's split: what a run folder or a checkpoint is tied to, beyond the flags."""
        table = self.table()
        text = "".join(f"{v}\t{s}\n" for v, s in zip(table["video"], table["split"]))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def notes(self) -> list[str]:
        """One line per group moved, and what the split file lists that is absent, for the stage's log."""
        return [f"protocol: group {m.group} moved from {m.source} to {m.target} ({m.reason})"
                for m in self.moves] + ([self.absent] if self.absent else [])


def video_uniform(key: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by seed and key alone."""
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def parse_real_split(text: str) -> tuple[float, float, float]:
    """'70/10/20' -> (0.7, 0.1, 0.2)."""
    try:
        parts = tuple(float(part) for part in text.split("/"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0:
        raise UserError(f"real split {text!r} is not three train/val/test percentages like 70/10/20")
    if abs(sum(parts) - 100) > 1e-6:
        raise UserError(f"real split {text!r} sums to {sum(parts):g}, not 100")
    return parts[0] / 100, parts[1] / 100, parts[2] / 100


def resolve_fakes(manifest: pd.DataFrame, settings: ProtocolSettings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training, test) manipulations, with 'rest' expanded and every name checked against the manifest."""
    available = sorted(manifest.loc[manifest["label"] == 1, "manipulation"].unique())
    train = _known(settings.train_fakes, available, "train fakes")
    rest = [name for name in available if name not in train]
    test = [name for requested in settings.test_fakes
            for name in (rest if requested == REST else [requested])]
    return train, _known(tuple(dict.fromkeys(test)), available, "test fakes")


def _known(names: tuple[str, ...], available: list[str], what: str) -> tuple[str, ...]:
    unknown = [name for name in names if name not in available]
    if unknown:
        raise UserError(f"unknown manipulation(s) in {what}: {', '.join(unknown)}; "
                        f"available: {', '.join(available) or 'none'}")
    return tuple(names)


# ---------------------------------------------------------------- one split per group


def _intervals(shares: tuple[float, float, float]) -> dict[str, tuple[float, float]]:
    edges = [0.0, shares[0], shares[0] + shares[1], 1.0]
    return {name: (edges[i], edges[i + 1]) for i, name in enumerate(SPLITS)}


def _by_hash(u: float, intervals: dict[str, tuple[float, float]]) -> str:
    return next((name for name, (lo, hi) in intervals.items() if lo <= u < hi and hi > lo), SPLITS[-1])


def _distance(u: float, interval: tuple[float, float]) -> float:
    lo, hi = interval
    return lo - u if u < lo else (u - hi if u >= hi else 0.0)


def _ensure_every_class(split: dict[str, str], classes: dict[str, frozenset[str]], u: dict[str, float],
                        intervals: dict[str, tuple[float, float]]) -> list[Move]:
    """Give test, then val, one group of every class that has MIN_GROUPS groups, when it has none by hash.

    The group moved is the one whose hash lies nearest the split's interval, among groups whose move
    leaves their own split with every class it held: deterministic, and a no-op on data of any size
    once the hash already did it.
    """
    moves: list[Move] = []
    holders: dict[str, list[str]] = {}
    for group, names in classes.items():
        for name in names:
            holders.setdefault(name, []).append(group)
    for target in ("test", "val"):
        if intervals[target][1] <= intervals[target][0]:
            continue
        for name in sorted(holders):
            groups = holders[name]
            if len(groups) < MIN_GROUPS or any(split[g] == target for g in groups):
                continue
            count = {(s, c): 0 for s in SPLITS for c in holders}
            for g, names in classes.items():
                for c in names:
                    count[split[g], c] += 1
            donors = [g for g in groups if all(count[split[g], c] > 1 for c in classes[g])]
            if not donors:
                continue
            group = min(donors, key=lambda g: (_distance(u[g], intervals[target]), g))
            lacking = [c for c in sorted(classes[group]) if not any(split[g] == target for g in holders[c])]
            moves.append(Move(group, split[group], target, f"{target} had no video of {', '.join(lacking)}"))
            split[group] = target
    return moves


def _hashed_group_splits(videos: pd.DataFrame, settings: ProtocolSettings,
                         shares: tuple[float, float, float] | None = None) -> tuple[pd.Series, list[Move]]:
    intervals = _intervals(shares or parse_real_split(settings.real_split))
    keys = sorted(set(videos["group"]))
    u = {key: video_uniform(f"group/{key}", settings.split_seed) for key in keys}
    split = {key: _by_hash(u[key], intervals) for key in keys}
    classes = videos.groupby("group")["manipulation"].agg(frozenset).to_dict()
    moves = _ensure_every_class(split, classes, u, intervals)
    return pd.Series(split, dtype=object), moves


def _listed_group_splits(videos: pd.DataFrame, listed: ListedSplits) -> pd.Series:
    """Split of each group named by a split file; a group the file puts in two splits is refused by name."""
    if listed.by_video:
        members = pd.Series([(v,) for v in videos["video"]], index=videos.index)
        lookup, what = listed.by_video, "videos"
    else:
        members, lookup, what = video_ids(videos), listed.by_id, "ids"
    found: dict[str, dict[str, str]] = {}
    for group, names in zip(videos["group"], members):
        entry = found.setdefault(group, {})
        entry.update({name: lookup[name] for name in names if name in lookup})
    split: dict[str, str] = {}
    for group, entry in found.items():
        distinct = sorted(set(entry.values()), key=SPLITS.index)
        if len(distinct) > 1:
            shown = [f"{next(n for n in sorted(entry) if entry[n] == s)} ({s})" for s in distinct]
            raise UserError(f"split file {listed.path} puts one group of videos in {len(distinct)} splits: {what} "
                            f"{' and '.join(shown)} share frame content through fakes made from both; fix the file")
        split[group] = distinct[0] if distinct else UNUSED
    return pd.Series(split, dtype=object)


# ---------------------------------------------------------------- which videos of a group are used


def _role(manipulation: str, label: int, train: tuple[str, ...], test: tuple[str, ...]) -> str:
    if label == 0:
        return "real"
    return {(True, False): "train", (False, True): "test", (True, True): "both"}.get(
        (manipulation in train, manipulation in test), "unused")


ROLE_RULES: dict[str, Callable[[str], str]] = {
    "real": lambda split: split,
    "train": lambda split: split if split in ("train", "val") else UNUSED,
    "test": lambda split: split if split == "test" else UNUSED,
    "both": lambda split: split,
    "unused": lambda split: UNUSED,
}
"""A video's split from its group's split, by the role of its class in the protocol."""


def _check_settings(settings: ProtocolSettings) -> None:
    parse_real_split(settings.real_split)


def make_splits(manifest: pd.DataFrame, settings: ProtocolSettings) -> Splits:
    """Manifest rows with `split` (train, val, test, or '' for frames not used) and `group` columns."""
    _check_settings(settings)
    listed = read_split_file(settings.split_file) if settings.split_file else None
    train, test = resolve_fakes(manifest, settings)
    videos = video_table(manifest)
    videos["group"] = video_groups(videos)
    unused: set[str] = set()
    if listed is not None:
        group_split, moves = _listed_group_splits(videos, listed), []
    elif OFFICIAL_SPLIT in manifest.columns:
        group_split, moves, unused = official_group_splits(
            manifest, videos, parse_real_split(settings.real_split),
            lambda free, shares: _hashed_group_splits(free, settings, shares))
    else:
        group_split, moves = _hashed_group_splits(videos, settings)
    roles = [_role(m, int(label), train, test) for m, label in zip(videos["manipulation"], videos["label"])]
    splits = [UNUSED if video in unused else ROLE_RULES[role](group_split[group])
              for role, group, video in zip(roles, videos["group"], videos["video"])]
    by_video = videos.assign(split=splits).set_index("video")
    out = manifest.copy()
    out["split"] = out["video"].map(by_video["split"]).astype(str)
    out["group"] = out["video"].map(by_video["group"]).astype(str)
    out = sample_frames(out, settings.frames_per_video)
    check_splits(out)
    return Splits(out, moves, _absent(listed, videos))


def _absent(listed: ListedSplits | None, videos: pd.DataFrame) -> str:
    """The note on names a split file lists that no video here has (by video name, or by id for FF++ lists)."""
    if listed is None:
        return ""
    present = set(videos["video"]) if listed.by_video else {i for ids in video_ids(videos) for i in ids}
    return absent_note(listed, present)


def assign_splits(manifest: pd.DataFrame, settings: ProtocolSettings) -> pd.DataFrame:
    """Copy of the manifest with `split` and `group` columns (see `make_splits`)."""
    return make_splits(manifest, settings).rows


def _require_both_classes(df: pd.DataFrame, split: str) -> None:
    present = set(df.loc[df["split"] == split, "label"].astype(int))
    if not present:
        raise UserError(f"the {split} split is empty; check --train-fakes/--test-fakes and the split settings")
    missing = [name for label, name in _CLASS_NAMES.items() if label not in present]
    if missing:
        need = " (AUC/EER would be undefined)" if split == "test" else ""
        raise UserError(f"the {split} split has no {missing[0]} videos{need}; "
                        "check --train-fakes/--test-fakes and the split settings")


def _spanning(df: pd.DataFrame, unit: str) -> None:
    per_unit = df.groupby(unit)["split"].nunique()
    mixed = per_unit[per_unit > 1]
    if len(mixed):
        key = mixed.index[0]
        found = sorted(set(df.loc[df[unit] == key, "split"]), key=lambda s: (s not in SPLITS, s))
        raise UserError(f"{unit} {key} is in more than one split: {', '.join(s or 'unused' for s in found)}")


def check_splits(df: pd.DataFrame) -> None:
    """Fail if a video (or a group's used videos) spans two splits, or if train or test lacks a class."""
    _spanning(df, "video")
    if "group" in df.columns:
        _spanning(df[df["split"] != UNUSED], "group")
    for split in ("train", "test"):
        _require_both_classes(df, split)


def split_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Videos and frames per split x manipulation, for printing ('' shown as 'unused')."""
    order = list(SPLITS) + ["unused"]
    split = pd.Categorical(df["split"].replace(UNUSED, "unused"), categories=order, ordered=True)
    table = df.assign(split=split).groupby(["split", "manipulation"], observed=True, sort=True).agg(
        label=("label", "first"), videos=("video", "nunique"), frames=("path", "size"))
    return table.reset_index()


def log_splits(splits: Splits, brief: bool = False) -> None:
    """What the protocol decided, on stderr: one line per split with each manipulation's videos and frames
    (`brief`: one line in all, for a stage whose table another stage of the same protocol printed already), and
    any group it moved. splits.csv holds every video's split."""
    table = split_summary(splits.rows)
    if brief:
        per_split = table.groupby("split", observed=True)[["videos", "frames"]].sum()
        print("splits: " + ", ".join(f"{split} {row.videos} videos ({row.frames} frames)"
                                     for split, row in per_split.iterrows()), file=sys.stderr)
    else:
        for split, rows in table.groupby("split", observed=True, sort=True):
            print(f"{split:>6}: " + ", ".join(f"{r.manipulation} {r.videos} videos ({r.frames} frames)"
                                             for r in rows.itertuples()), file=sys.stderr)
    for line in splits.notes():
        print(line, file=sys.stderr)
