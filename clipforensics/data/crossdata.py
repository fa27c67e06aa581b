"""Train here, test there: caches of other data sets as test sets of a run trained on one cache.

A run trains and selects on cache A under A's protocol; every `--test-cache` B is a test set of its
own: all of B, or B's official test list when its layout has one (Celeb-DF's List_of_testing_videos.txt).
Each test set is named by its data set (the cache's file stem) in the scores table's `dataset` column,
so the evaluator reports it separately, at the threshold A's validation rows chose.

Features are only comparable when the same model, weights and image preprocessing made them: a test
cache that differs from A in any of those attributes is refused, naming the attribute. The manifest
hash differs between data sets by construction and is not compared; nor are the parts of a crop recipe
that name the data set rather than the crop (its layout, FF++ compression, frames per video).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.cache import IDENTITY_KEYS, FeatureCache, read_cache
from clipforensics.core.sampling import sample_frames
from clipforensics.data.manifest import OFFICIAL_SPLIT
from clipforensics.data.protocol import TEST_ROWS, CrossSettings
from clipforensics.data.scores import DATASET, make_scores

PER_DATASET = ("manifest_hash",)
"""Identity attributes that differ between data sets by construction."""
FEATURE_ATTRS = ("mean", "std", "interpolation", "resize_mode", "embed_dim", "preprocessing", "adapter_sha")
"""Attributes beyond IDENTITY_KEYS that decide what an embedding means (recorded by extraction or LoRA)."""
RECIPE_DATASET_KEYS = ("layout", "compression", "frames")
"""Keys of a prepare_frames crop recipe that describe the data set, not how a face is cropped."""


@dataclass
class TestSet:
    """One other data set's test rows (`split` = test, `dataset` = its name) and its cache; the rows' features
    are read when scored, a block at a time (heads/features.test_probabilities), never held with the run."""

    name: str
    cache: FeatureCache
    rows: pd.DataFrame
    official: bool

    def summary(self) -> str:
        counts = self.rows.drop_duplicates("video")["label"].value_counts()
        return (f"test data set {self.name}: {counts.get(0, 0)} real and {counts.get(1, 0)} fake videos, "
                f"{len(self.rows)} frames ({'its official test list' if self.official else 'all of it'})")

    def record(self) -> dict[str, Any]:
        """What a run records of this test set."""
        return {"name": self.name, "cache": str(self.cache.path.resolve()), "identity": self.cache.identity(),
                "data_root": self.cache.attrs.get("data_root"), "rows": "official test list" if self.official
                else "all", "frames": len(self.rows), "videos": int(self.rows["video"].nunique())}


def dataset_name(path: str | Path) -> str:
    """A data set's name in reports: its cache file's stem (cache/celebdf.h5 -> celebdf)."""
    return Path(path).stem


def _recipe_key(value: Any) -> Any:
    """A crop recipe without the keys that name the data set (dicts only; other values as they are)."""
    if isinstance(value, str) and value[:1] == "{":
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, dict):
        return json.dumps({k: v for k, v in value.items() if k not in RECIPE_DATASET_KEYS}, sort_keys=True)
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, tuple)) else value


def feature_identity(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes two caches must share for their embeddings to mean the same thing."""
    keys = [k for k in IDENTITY_KEYS if k not in PER_DATASET] + list(FEATURE_ATTRS)
    return {k: _recipe_key(attrs.get(k)) for k in dict.fromkeys(keys)}


def check_same_features(reference: FeatureCache, other: FeatureCache) -> None:
    """Refuse a cache whose embeddings were made by another model, weights or preprocessing than the reference's."""
    mine, theirs = feature_identity(reference.attrs), feature_identity(other.attrs)
    diffs = [f"{k}: {theirs[k]!r} != {mine[k]!r}" for k in mine if theirs[k] != mine[k]]
    if diffs:
        raise UserError(f"{other.path} was not made with the model, weights and preprocessing of {reference.path} "
                        f"({'; '.join(diffs)}): its features cannot be scored by a head fitted on the other")


def _names(paths: tuple[str, ...], taken: tuple[str, ...]) -> list[str]:
    names = [dataset_name(p) for p in paths]
    seen = list(taken)
    for path, name in zip(paths, names):
        if name in seen:
            raise UserError(f"two data sets would both be named {name!r} (--test-cache {path}); data sets are named "
                            "by their cache file's stem: rename one cache")
        seen.append(name)
    return names


def test_rows(cache: FeatureCache, name: str, which: str, frames_per_video: int | None = None) -> tuple[pd.DataFrame,
                                                                                                        bool]:
    """(the cache's test rows, whether they are its official test list); both classes are required."""
    if which not in TEST_ROWS:
        raise UserError(f"--test-rows must be one of {', '.join(TEST_ROWS)}, got {which!r}")
    manifest = cache.manifest
    official = (which == "official" and OFFICIAL_SPLIT in manifest.columns
                and bool((manifest[OFFICIAL_SPLIT] == "test").any()))
    rows = manifest[manifest[OFFICIAL_SPLIT] == "test"] if official else manifest
    rows = rows.drop(columns=[OFFICIAL_SPLIT], errors="ignore").assign(split="test", **{DATASET: name})
    rows = sample_frames(rows, frames_per_video)
    classes = set(rows["label"].astype(int))
    if classes != {0, 1}:
        missing = "real" if 0 not in classes else "fake"
        what = "official test list" if official else "frames"
        raise UserError(f"test data set {name} ({cache.path}): its {what} hold no {missing} videos, so AUC and EER "
                        "would be undefined")
    return rows, official


def load_test_sets(reference: FeatureCache, settings: CrossSettings, frames_per_video: int | None = None,
                   reference_name: str | None = None) -> list[TestSet]:
    """Every --test-cache, checked against the reference cache and cut to its test rows."""
    for path in settings.test_cache:
        if Path(path).resolve() == reference.path.resolve():
            raise UserError(f"--test-cache {path} is the training cache itself; its test split is already tested")
    names = _names(settings.test_cache, (reference_name or dataset_name(reference.path),))
    sets = []
    for path, name in zip(settings.test_cache, names):
        cache = read_cache(path)
        check_same_features(reference, cache)
        rows, official = test_rows(cache, name, settings.test_rows, frames_per_video)
        sets.append(TestSet(name, cache, rows, official))
    return sets


def check_disjoint(train_rows: pd.DataFrame, test_set: TestSet) -> None:
    """A video key of the training cache's train or val rows that is also a test video of another data set is
    the same video twice (e.g. FF++ at c23 and at c40): refused, never silently measured."""
    seen = set(train_rows.loc[train_rows["split"].isin(("train", "val")), "video"])
    shared = sorted(seen & set(test_set.rows["video"]))
    if shared:
        raise UserError(f"test data set {test_set.name}: {len(shared)} of its test videos have the key of a train or "
                        f"val video of the training cache (first: {shared[0]}); the same videos in two data sets "
                        "(another compression of one data set?) would be measured on what the head was fitted or "
                        "selected on")


def scores_with_tests(own_rows: pd.DataFrame, own_scores: np.ndarray, own_name: str, tests: list[TestSet],
                      predict: Callable[[TestSet], np.ndarray]) -> pd.DataFrame:
    """One scores table: the training cache's scored rows and, when there are test sets, each test set's rows
    scored by `predict` (test set -> fake probability of each of its rows), every row named by its data set."""
    if not tests:
        return make_scores(own_rows, own_scores)
    tables = [make_scores(own_rows.assign(**{DATASET: own_name}), own_scores)]
    tables += [make_scores(t.rows, predict(t)) for t in tests]
    return pd.concat(tables, ignore_index=True)
