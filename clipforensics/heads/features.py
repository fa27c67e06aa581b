"""What a head fit reads from a cache under a protocol split: one split's features and the rows a head scores.

The heads stage (heads/fit.py) and the studies above it (the matrix, the layer sweep) share these, so a study
never reaches into the stage's orchestrator. Rows are read from the cache file as float32, converted block by
block as they are read (data/stored.py), and only when a head uses them (heads/rows.py): a split's rows are held
at most once, in the type the heads fit on, and the scored rows are scored a block at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clipforensics.data.cache import FeatureCache
from clipforensics.data.crossdata import TestSet
from clipforensics.data.protocol import ProtocolSettings, make_splits
from clipforensics.heads.heads import Head
from clipforensics.heads.rows import Features, probabilities

SCORED_SPLITS = ("val", "test")


def split_rows(cache: FeatureCache, protocol: ProtocolSettings) -> pd.DataFrame:
    """The cache's manifest with its protocol split (index = row in the embedding matrix)."""
    return make_splits(cache.manifest, protocol).rows


def features(cache: FeatureCache, rows: pd.DataFrame, split: str) -> Features:
    """The embeddings, labels and videos of one split's rows: what a head trains or selects on."""
    part = rows.loc[rows["split"] == split, ["label", "video"]]
    return Features.stored(cache.embeddings, part.index.to_numpy(), part["label"].to_numpy(int),
                           part["video"].to_numpy())


def scored_split(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a head scores: validation picks the threshold, test is measured."""
    return rows[rows["split"].isin(SCORED_SPLITS)]


def scored_probabilities(heads: list[Head], cache: FeatureCache, scored: pd.DataFrame) -> list[np.ndarray]:
    """Each head's P(fake) of the scored rows (index = row of the cache), read once and scored a block at a time."""
    return probabilities([head.predict_proba for head in heads], cache.embeddings, scored.index.to_numpy())


def test_probabilities(head: Head, test: TestSet) -> np.ndarray:
    """The head's P(fake) of another data set's test rows, read from its cache and scored a block at a time."""
    return scored_probabilities([head], test.cache, test.rows)[0]
