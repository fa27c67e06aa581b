"""What one report is of and how it is asked for: the page's input, shared by the builder and its sections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from clipforensics.measure.result import RunResult
from clipforensics.report.included import Included


@dataclass
class ReportOptions:
    """The evaluator's settings the page needs."""

    video_agg: str = "mean"
    top_k: int = 10
    compare_to: str | None = None
    all_pairs: bool = False


@dataclass
class ReportContent:
    """What one report is of: the measured runs, their scores tables, the metrics so far, folded analyses."""

    results: list[RunResult]
    tables: list[pd.DataFrame]
    metrics: dict[str, Any]
    included: list[Included]
    options: ReportOptions

    @property
    def reference(self) -> str:
        """The run every other is compared with: --compare-to, else the first."""
        return self.options.compare_to or self.results[0].name
