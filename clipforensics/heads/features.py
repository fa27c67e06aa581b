"""What a head fit reads from a cache under a protocol split: one split's features and the rows a head scores.

The heads stage (heads/fit.py) and the studies above it (the matrix, the layer sweep) share these, so a study
never reaches into the stage's orchestrator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clipforensics.data.cache import FeatureCache
from clipforensics.data.protocol import ProtocolSettings, make_splits
from clipforensics.heads.heads import Features

SCORED_SPLITS = ("val", "test")


def split_rows(cache: FeatureCache, protocol: ProtocolSettings) -> pd.DataFrame:
    """The cache's manifest with its protocol split (index = row in the embedding matrix)."""
    return make_splits(cache.manifest, protocol).rows


def features(cache: FeatureCache, rows: pd.DataFrame, split: str) -> Features:
    """The embeddings, labels and videos of one split's rows: what a head trains or selects on."""
    return Features.of(cache.embeddings, rows[rows["split"] == split])


def scored_rows(cache: FeatureCache, rows: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows a head scores (validation picks the threshold, test is measured) and their features."""
    scored = rows[rows["split"].isin(SCORED_SPLITS)]
    return scored, cache.embeddings[scored.index.to_numpy()].astype("float32")
