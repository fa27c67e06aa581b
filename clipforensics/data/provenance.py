"""What a LoRA cache's backbone has seen, the refusal to evaluate on it, and the one rule that says which
test cells are *not* unseen for such a backbone (used by the matrix and by the report alike).

A cache re-extracted by the LoRA stage holds features of a backbone that was trained on that run's
train videos and selected (best epoch) on its val videos. Those features are only honest under a
protocol whose test rows share no group with either, and whose val rows share no group with the
training videos: any other protocol would measure the LoRA run's own training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import h5py
import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.identity import differences
from clipforensics.core.settings import to_dict
from clipforensics.data.cache import IDENTITY_KEYS, FeatureCache, read_attrs
from clipforensics.data.protocol import ProtocolSettings

ATTR_PROTOCOL = "lora_protocol"
ATTR_TRAIN = "lora_train_videos"
ATTR_VAL = "lora_val_videos"
ATTR_SPLITS = "lora_splits"


@dataclass(frozen=True)
class LoraProvenance:
    """The LoRA run behind a cache: its protocol, split digest and the videos it trained and selected on."""

    protocol: Mapping[str, Any]
    splits: str
    train: frozenset[str]
    val: frozenset[str]
    run: str

    @classmethod
    def of(cls, attrs: Mapping[str, Any]) -> "LoraProvenance | None":
        """Read from a cache's attributes; None for a cache no LoRA run made."""
        if ATTR_TRAIN not in attrs:
            return None
        return cls(dict(attrs.get(ATTR_PROTOCOL) or {}), str(attrs.get(ATTR_SPLITS, "")),
                   frozenset(attrs[ATTR_TRAIN]), frozenset(attrs.get(ATTR_VAL) or ()), str(attrs.get("lora_run", "")))

    @property
    def manipulations(self) -> tuple[str, ...]:
        """The manipulations the backbone was trained on."""
        return tuple(self.protocol.get("train_fakes") or ())

    def attrs(self) -> dict[str, Any]:
        return {ATTR_PROTOCOL: dict(self.protocol), ATTR_SPLITS: self.splits,
                ATTR_TRAIN: sorted(self.train), ATTR_VAL: sorted(self.val)}


def provenance_of(protocol: Mapping[str, Any], digest: str, rows: pd.DataFrame, run: str) -> LoraProvenance:
    """The provenance a LoRA run records: every video of its train and val splits."""
    videos = rows.drop_duplicates("video")
    return LoraProvenance(dict(protocol), digest, frozenset(videos.loc[videos["split"] == "train", "video"]),
                          frozenset(videos.loc[videos["split"] == "val", "video"]), run)


def overlap(provenance: LoraProvenance, rows: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """split -> (videos in groups the LoRA run saw, videos) for this protocol's test and val rows.

    Test videos count against the run's train and val groups (trained on, or selected on); val videos
    against its train groups (selection on what the backbone trained on is biased too).
    """
    videos = rows.drop_duplicates("video")
    group_of = videos.set_index("video")["group"]
    trained = set(group_of.reindex(sorted(provenance.train)).dropna())
    seen = trained | set(group_of.reindex(sorted(provenance.val)).dropna())
    out = {}
    for split, groups in (("test", seen), ("val", trained)):
        part = videos[videos["split"] == split]
        out[split] = (int(part["group"].isin(groups).sum()), len(part))
    return out


def check_lora_overlap(attrs: Mapping[str, Any], rows: pd.DataFrame, cache: str) -> LoraProvenance | None:
    """Refuse, in one line, split rows whose test (or val) videos share a group with the LoRA run's data."""
    provenance = LoraProvenance.of(attrs)
    if provenance is None:
        return None
    found = overlap(provenance, rows)
    bad = [f"{n} of this protocol's {total} {split} videos" for split, (n, total) in found.items() if n]
    if bad:
        hint = f" (--split-file {provenance.run}/splits.csv)" if provenance.run else ""
        raise UserError(f"{cache} comes from a LoRA run whose training or epoch selection saw the groups of "
                        f"{' and '.join(bad)}: use the LoRA run's protocol{hint}, or the base cache")
    return provenance


@dataclass(frozen=True)
class TunedTower:
    """What a scorer's image tower was tuned on, as one data set sees it.

    `here` says whether that data set is the one the tuning ran on: True (it is), False (another one), None
    (not known: then it may be, and nothing the tuning trained on is called unseen)."""

    manipulations: tuple[str, ...]
    run: str
    here: bool | None = True

    def saw(self, manipulation: str) -> bool:
        """Whether the tuning (may have) trained on this manipulation of this data set."""
        return self.here is not False and manipulation in self.manipulations

    def describe(self) -> str:
        """'backbone tuned on FaceSwap (LoRA run runs/x)', with the data set where it is not this one."""
        where = {True: "", False: " of another data set", None: " (of this data set or another)"}[self.here]
        run = f" (LoRA run {self.run})" if self.run else ""
        return f"backbone tuned on {', '.join(self.manipulations) or 'nothing recorded'}{where}{run}"

    def record(self) -> dict[str, Any]:
        return {"manipulations": list(self.manipulations), "run": self.run, "here": self.here}

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "TunedTower | None":
        if not record:
            return None
        here = record.get("here", None)
        return cls(tuple(record.get("manipulations") or ()), str(record.get("run") or ""),
                   None if here is None else bool(here))


IN_DOMAIN, BACKBONE_SEEN, UNSEEN = "in-domain", "backbone-seen", "unseen"


def test_kind(manipulation: str, trained: Iterable[str], tower: TunedTower | None) -> str:
    """What a tested manipulation is to a scorer: in-domain (its head trained on it), backbone-seen (its tower was
    tuned on it, whatever the head trained on) or unseen. The one rule of the reading, the matrix's marks, the
    summary row and the robustness groups: nothing a backbone saw is ever counted unseen."""
    if manipulation in trained:
        return IN_DOMAIN
    return BACKBONE_SEEN if tower is not None and tower.saw(manipulation) else UNSEEN


def cache_videos(path: str | Path) -> frozenset[str] | None:
    """The video keys a cache holds (only that column is read); None where the file cannot be read."""
    try:
        with h5py.File(path, "r") as h5:
            return frozenset(str(v) for v in h5["video"].asstr()[...])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def tuned_tower(path: str | Path, attrs: Mapping[str, Any]) -> TunedTower | None:
    """The tower behind a cache: None for a base cache; for a LoRA cache its run's manipulations, and whether
    this cache holds the videos that run trained on (then it is the data set the tuning ran on)."""
    provenance = LoraProvenance.of(attrs)
    if provenance is None:
        return None
    videos = cache_videos(path)
    here = None if videos is None else bool(videos & provenance.train)
    return TunedTower(provenance.manipulations, provenance.run, here)


def backbone_note(tower: TunedTower | None, trained: Iterable[str], source: str = "") -> str:
    """'backbone saw X' for a head trained on other manipulations than the tower behind its features: the
    tower's manipulations are no unseen test for those features, whatever the head was fitted on. Heads of
    another data set (`source`) than the tuned one get no note."""
    if tower is None or source or set(trained) == set(tower.manipulations):
        return ""
    return f"backbone saw {', '.join(tower.manipulations)}"


def run_identity(cache: FeatureCache, protocol: ProtocolSettings) -> dict[str, Any]:
    """What a run folder is tied to: the cache's identity and the protocol."""
    return {"cache": str(cache.path.resolve()), "cache_identity": cache.identity(),
            "protocol": to_dict(protocol)}


def check_recorded_cache(meta: Mapping[str, Any], what: str) -> None:
    """Scores are reported under the identity of the cache named in their record: refuse them when that cache is
    no longer the one they were made from (re-extracted with another seed or model since), naming every differing
    field, rather than report old scores under the new cache's model and weights. A cache that is gone or cannot
    be read is left to the report, which names it as missing."""
    cache, recorded = meta.get("cache"), meta.get("cache_identity")
    if not cache or not isinstance(recorded, Mapping) or not Path(str(cache)).is_file():
        return
    try:
        attrs = read_attrs(str(cache))
    except UserError:
        return
    diffs = differences(recorded, {k: attrs.get(k) for k in IDENTITY_KEYS}, keys=recorded.keys())
    if diffs:
        raise UserError(f"{what}: the cache {cache} is not the one these scores were made from (re-extracted "
                        f"since?); differs in {'; '.join(diffs)}; rescore it on this cache, or restore the old cache")
