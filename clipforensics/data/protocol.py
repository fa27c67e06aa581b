"""Train/val/test splits by video, never by frame, decided from the manifest alone.

Each video's split comes from a hash of the seed and its video key (or from FF++ official split
lists), so it is reproducible and adding videos never moves the others. Fakes never land in an
earlier split than the real videos they were made from: a fake whose target or source real video is
in test is never trained on, which keeps identities from leaking into the test set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.manifest import sample_frames, video_table
from clipforensics.core.settings import option

SPLITS = ("train", "val", "test")
UNUSED = ""
REST = "rest"
_RANK = {name: rank for rank, name in enumerate(SPLITS)}
_CLASS_NAMES = {0: "real", 1: "fake"}


@dataclass
class ProtocolSettings:
    """Which manipulations train and test, and how videos are divided (default: FaceSwap -> NeuralTextures)."""

    train_fakes: tuple[str, ...] = option(("FaceSwap",), "manipulation(s) seen in training")
    test_fakes: tuple[str, ...] = option(
        ("NeuralTextures",), "manipulation(s) tested on; 'rest' = every manipulation not trained on")
    real_split: str = option("70/10/20", "train/val/test percentages of real videos")
    fake_val: float = option(0.1, "share of training-manipulation videos held out for validation")
    split_seed: int = option(0, "seed of the video hash")
    split_file: str | None = option(
        None, "FF++ official splits: a folder with train.json/val.json/test.json, or one JSON "
              "{train: [...], val: [...], test: [...]} (lists of [target, source] pairs)", metavar="PATH")
    frames_per_video: int | None = option(None, "use at most N frames per video, spread evenly", metavar="N")


class OfficialSplits(NamedTuple):
    """FF++ split lists indexed two ways: single video ids (real) and unordered pairs (fakes)."""

    ids: dict[str, str]
    pairs: dict[tuple[str, str], str]


class FakeVideo(NamedTuple):
    """What decides a fake video's split: its own base split and the splits of its real videos."""

    base: str
    reals: tuple[str, ...]


def video_uniform(video: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by seed and video key alone."""
    digest = hashlib.sha256(f"{seed}:{video}".encode("utf-8")).digest()
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


def _by_threshold(u: float, shares: tuple[float, ...]) -> str:
    """The split whose cumulative share first exceeds u."""
    total = 0.0
    for name, share in zip(SPLITS, shares):
        total += share
        if u < total:
            return name
    return SPLITS[len(shares) - 1]


def _latest(*splits: str) -> str:
    """The latest of the given splits in train < val < test order."""
    return max(splits, key=_RANK.__getitem__)


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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"split file {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
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


def _pair_keys(reals: pd.DataFrame, fakes: pd.DataFrame) -> pd.Series:
    """Hash key of each real video: FF++ swapped pairs (000_003 / 003_000) share one key, so both
    real videos of a pair, and hence their fakes, land in the same split."""
    known = fakes[(fakes["target"] != "") & (fakes["source"] != "")]
    partner = known.groupby("target")["source"].min().to_dict()
    ids = reals["target"].map(lambda vid: min(vid, partner.get(vid, vid)))
    return reals["manipulation"] + "/" + ids


def _real_splits(reals: pd.DataFrame, fakes: pd.DataFrame, settings: ProtocolSettings,
                 official: OfficialSplits | None) -> pd.Series:
    """Split of every real video: its listed split, or the hash of its pair cut into the real percentages."""
    if official is not None:
        return reals["target"].map(lambda vid: official.ids.get(vid, UNUSED))
    shares = parse_real_split(settings.real_split)
    return _pair_keys(reals, fakes).map(lambda key: _by_threshold(video_uniform(key, settings.split_seed), shares))


def _real_by_id(reals: pd.DataFrame, splits: pd.Series) -> dict[str, str]:
    """Real video id -> latest split among real videos with that id (ids may repeat across real folders)."""
    used = splits[splits != UNUSED]
    return used.groupby(reals.loc[used.index, "target"]).agg(lambda s: _latest(*s)).to_dict()


def _train_rule(fake: FakeVideo) -> str:
    if fake.base == UNUSED:
        return UNUSED
    split = _latest(fake.base, *fake.reals)
    return UNUSED if split == "test" else split


def _test_rule(fake: FakeVideo) -> str:
    """A test fake is made of its real videos' frames: it is used only when they are test videos too."""
    return "test" if fake.base == "test" and all(r == "test" for r in fake.reals) else UNUSED


def _both_rule(fake: FakeVideo) -> str:
    """In-domain fakes go where their real videos (whose frames they are made of) go, and are
    dropped when those sit in different splits: the same frames never appear in two splits, and
    in-domain test fakes obey the same rule as cross-manipulation ones."""
    if fake.base == UNUSED:
        return UNUSED
    split = _latest(fake.base, *fake.reals)
    return split if all(r == split for r in fake.reals) else UNUSED


FAKE_RULES: dict[str, Callable[[FakeVideo], str]] = {
    "train": _train_rule,
    "test": _test_rule,
    "both": _both_rule,
    "unused": lambda fake: UNUSED,
}


def _role(manipulation: str, train: tuple[str, ...], test: tuple[str, ...]) -> str:
    return {(True, False): "train", (False, True): "test", (True, True): "both"}.get(
        (manipulation in train, manipulation in test), "unused")


HASH_BASES: dict[str, Callable[[float, bool, ProtocolSettings], str]] = {
    "train": lambda u, has_reals, s: _by_threshold(u, (1 - s.fake_val, s.fake_val)),
    "both": lambda u, has_reals, s: "train" if has_reals else _by_threshold(u, parse_real_split(s.real_split)),
    "test": lambda u, has_reals, s: "test",
    "unused": lambda u, has_reals, s: UNUSED,
}
"""Base split of a fake per role without a split file; in-domain fakes with known real videos follow them."""


def _hash_base(role: str, video: str, has_reals: bool, settings: ProtocolSettings) -> str:
    return HASH_BASES[role](video_uniform(video, settings.split_seed), has_reals, settings)


def _listed_base(row: Any, official: OfficialSplits) -> str:
    pair = tuple(sorted((row.target, row.source)))
    return official.pairs.get(pair, UNUSED) if row.target and row.source else UNUSED


def _fake_splits(fakes: pd.DataFrame, real_by_id: dict[str, str], settings: ProtocolSettings,
                 official: OfficialSplits | None) -> pd.Series:
    train, test = resolve_fakes(fakes, settings)
    splits: dict[str, str] = {}
    for row in fakes.itertuples(index=False):
        role = _role(row.manipulation, train, test)
        reals = tuple(real_by_id[vid] for vid in (row.target, row.source) if vid in real_by_id)
        base = _listed_base(row, official) if official else _hash_base(role, row.video, bool(reals), settings)
        splits[row.video] = FAKE_RULES[role](FakeVideo(base, reals))
    return pd.Series(splits, dtype=object)


def _check_settings(settings: ProtocolSettings) -> None:
    parse_real_split(settings.real_split)
    if not 0 <= settings.fake_val < 1:
        raise UserError(f"fake_val must be in [0, 1), got {settings.fake_val}")


def assign_splits(manifest: pd.DataFrame, settings: ProtocolSettings) -> pd.DataFrame:
    """Copy of the manifest with a `split` column: train, val, test, or '' for frames not used."""
    _check_settings(settings)
    official = load_split_file(settings.split_file) if settings.split_file else None
    videos = video_table(manifest)
    reals, fakes = videos[videos["label"] == 0], videos[videos["label"] == 1]
    real_splits = _real_splits(reals, fakes, settings, official)
    by_video = pd.concat([
        pd.Series(real_splits.to_numpy(), index=reals["video"].to_numpy(), dtype=object),
        _fake_splits(fakes, _real_by_id(reals, real_splits), settings, official),
    ])
    out = manifest.copy()
    out["split"] = out["video"].map(by_video).fillna(UNUSED).astype(str)
    out = sample_frames(out, settings.frames_per_video)
    check_splits(out)
    return out


def _require_both_classes(df: pd.DataFrame, split: str) -> None:
    present = set(df.loc[df["split"] == split, "label"].astype(int))
    if not present:
        raise UserError(f"the {split} split is empty; check --train-fakes/--test-fakes and the split settings")
    missing = [name for label, name in _CLASS_NAMES.items() if label not in present]
    if missing:
        need = " (AUC/EER would be undefined)" if split == "test" else ""
        raise UserError(f"the {split} split has no {missing[0]} videos{need}; "
                        "check --train-fakes/--test-fakes and the split settings")


def check_splits(df: pd.DataFrame) -> None:
    """Fail if a video spans two splits, or if train or test lacks real or fake videos."""
    per_video = df.groupby("video")["split"].nunique()
    mixed = per_video[per_video > 1]
    if len(mixed):
        video = mixed.index[0]
        found = sorted(set(df.loc[df["video"] == video, "split"]))
        raise UserError(f"video {video} is in more than one split: {', '.join(s or 'unused' for s in found)}")
    for split in ("train", "test"):
        _require_both_classes(df, split)


def split_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Videos and frames per split x manipulation, for printing ('' shown as 'unused')."""
    order = list(SPLITS) + ["unused"]
    split = pd.Categorical(df["split"].replace(UNUSED, "unused"), categories=order, ordered=True)
    table = df.assign(split=split).groupby(["split", "manipulation"], observed=True, sort=True).agg(
        label=("label", "first"), videos=("video", "nunique"), frames=("path", "size"))
    return table.reset_index()
