"""An embedding map of the cache the runs were scored on: its embeddings projected on their first two principal
components (numpy only), coloured by manipulation and by split, to see whether manipulations separate at all
in the backbone's space before any head is fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.cache import read_cache
from clipforensics.report.figures import new_figure, save_figure

MAX_POINTS = 4000
"""Points drawn at most (an even random subsample beyond it): a map, not a census."""
NOT_USED = "not in the protocol"


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows projected on the first two principal components, and the share of variance each explains."""
    centred = x - x.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular ** 2
    share = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return centred @ vt[:2].T, share


def embedding_points(cache_path: str, splits: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """The cache's rows (at most MAX_POINTS) with pc1, pc2, manipulation ('real' for reals) and split (from the
    scores table's `path`/`split`; rows the protocol left out are NOT_USED)."""
    cache = read_cache(cache_path)
    manifest = cache.manifest.reset_index(drop=True)
    keep = np.arange(len(manifest))
    if len(keep) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(len(keep), MAX_POINTS, replace=False))
    coords, share = pca_2d(cache.embeddings[keep].astype(np.float64))
    rows = manifest.iloc[keep]
    split_of = dict(zip(splits["path"].astype(str), splits["split"].astype(str)))
    return pd.DataFrame({"pc1": coords[:, 0], "pc2": coords[:, 1],
                         "manipulation": np.where(rows["label"].to_numpy() == 0, "real",
                                                  rows["manipulation"].astype(str).to_numpy()),
                         "split": [split_of.get(str(p), NOT_USED) for p in rows["path"]]}), share


def plot_embedding(cache_path: str, splits: pd.DataFrame, out_png: Path) -> Path:
    """Two panels of the same PCA map: coloured by manipulation, and by split."""
    try:
        points, share = embedding_points(cache_path, splits)
    except (UserError, OSError, KeyError) as exc:
        raise UserError(f"embedding map: cannot read {cache_path}: {exc}") from None
    fig = new_figure(12, 5.2)
    for ax, column in zip(fig.subplots(1, 2), ("manipulation", "split")):
        for name, group in points.groupby(column, sort=True):
            ax.scatter(group["pc1"], group["pc2"], s=6, alpha=0.6, label=f"{name} ({len(group)})")
        ax.set(xlabel=f"PC1 ({share[0]:.0%} of variance)", ylabel=f"PC2 ({share[1]:.0%})", title=f"by {column}")
        ax.legend(fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(0, -0.14), frameon=False, ncol=3)
    fig.suptitle(f"embeddings of {Path(cache_path).name}, first two principal components")
    return save_figure(fig, out_png, svg=True)
