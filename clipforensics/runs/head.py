"""The fitted-head kind of run folder (fit_heads.py): a scikit-learn head on a cache's embeddings, saved in the
format of heads/saved.py (which names its files)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clipforensics.core.errors import UserError
from clipforensics.data.cache import FeatureCache
from clipforensics.heads.saved import MODEL_FILE, MODEL_SHA, load_head
from clipforensics.runs.base import Run, RunKind, Scorer
from clipforensics.runs.records import check_artifact

if TYPE_CHECKING:
    import torch

    from clipforensics.extract.models import LoadedModel


def rounded_scores(head: Any) -> Scorer:
    """P(fake) per row. Heads were fitted on float16-stored embeddings, so new embeddings get the same rounding
    first (a no-op on embeddings read from a cache)."""
    def score(embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(head.predict_proba(embeddings.astype(np.float16).astype(np.float32)), dtype=np.float64)
    return score


@dataclass(frozen=True)
class HeadKind(RunKind):
    """head.json names the cache the head was fitted on and its identity; model.joblib is the head."""

    def base(self, run: Run) -> tuple[str | None, dict[str, Any]]:
        return run.record.get("cache"), run.record.get("cache_identity") or {}

    def scorer(self, run: Run) -> Scorer:
        head = load_head(run.folder / MODEL_FILE)  # a damaged file is named as such before any hash is compared
        check_artifact(run.folder / MODEL_FILE, run.record.get(MODEL_SHA), self.fix)
        return rounded_scores(head)

    def scored_cache(self, run: Run) -> str:
        return str(run.record["cache"])

    def check_cache(self, run: Run, cache: FeatureCache) -> None:
        expected = run.record.get("cache_identity")
        if expected and cache.identity() != expected:
            raise UserError(f"{run.folder}: {cache.path} is not the cache the head was fitted on (re-extracted?)")

    def precision(self, run: Run, attrs: dict[str, Any], device: torch.device) -> str:
        return str(attrs["precision"])

    def tower(self, run: Run, attrs: dict[str, Any], device: str, precision: str) -> LoadedModel:
        from clipforensics.extract.tower import check_weights, load_tower  # torch: only to rebuild a tower
        check_weights(attrs, run.folder)
        return load_tower(attrs, device, precision, str(run.folder))
