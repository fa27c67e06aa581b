"""What the evaluator hands the report: one scorer's measured test split."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class RunResult:
    """One scorer's test-split outcome, as the evaluator computed it (the report only renders it)."""

    name: str
    scores: pd.DataFrame
    threshold: float
    threshold_note: str
    metrics: dict
    per_manipulation: dict
    data_root: str | None = None
    dataset: str | None = None
    """The data set these test rows come from, when a run was tested on several (else None)."""

    @property
    def video_agg(self) -> str:
        """The aggregator the evaluator used, so figures match the table's video numbers."""
        return str(self.metrics.get("video", {}).get("agg", "mean"))
