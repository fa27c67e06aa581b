"""What a head fit reads from a cache under a protocol split: one split's features and the rows a head scores.

The heads stage (heads/fit.py) and the studies above it (the matrix, the layer sweep) share these, so a study
never reaches into the stage's orchestrator. Rows are read from the cache file as float32, converted block by
block as they are read (data/stored.py): a split's rows are held once, in the type the heads fit on.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd

from clipforensics.data.cache import FeatureCache
from clipforensics.data.protocol import ProtocolSettings, make_splits
from clipforensics.heads.heads import Features

SCORED_SPLITS = ("val", "test")


class RowSource(Protocol):
    """Rows read on demand: a cache's StoredRows, or block tokens joined side by side (heads/layers.py)."""

    def read(self, idx: np.ndarray, dtype: Any = None) -> np.ndarray: ...


def rows_float32(values: RowSource | np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The rows `idx` in float32, the heads' input type: from the file without a float16 copy of them."""
    if isinstance(values, np.ndarray):
        return values[idx].astype(np.float32)
    return values.read(idx, np.float32)


def split_rows(cache: FeatureCache, protocol: ProtocolSettings) -> pd.DataFrame:
    """The cache's manifest with its protocol split (index = row in the embedding matrix)."""
    return make_splits(cache.manifest, protocol).rows


def features(cache: FeatureCache, rows: pd.DataFrame, split: str) -> Features:
    """The embeddings, labels and videos of one split's rows: what a head trains or selects on."""
    part = rows.loc[rows["split"] == split, ["label", "video"]]
    return Features(rows_float32(cache.embeddings, part.index.to_numpy()), part["label"].to_numpy(int),
                    part["video"].to_numpy())


def scored_split(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a head scores: validation picks the threshold, test is measured."""
    return rows[rows["split"].isin(SCORED_SPLITS)]


def scored_rows(cache: FeatureCache, rows: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows a head scores and their features."""
    scored = scored_split(rows)
    return scored, rows_float32(cache.embeddings, scored.index.to_numpy())
