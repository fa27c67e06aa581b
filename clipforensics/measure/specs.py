"""Every metric the evaluator reports, registered once as a spec that all consumers read.

The evaluator's level report, the bootstrap, the results table, the matrix cells and the robustness rows
iterate over `METRICS`; a new metric is one `METRICS.register` call here (a point function, and when
cheap a vectorised reducer of the bootstrap's weighted curve), and appears in all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from clipforensics.core.registry import Registry
from clipforensics.measure.curve import (_ap_from, _auc_from, _Curve, _eer_from, _pauc_from, average_precision, eer,
                                          partial_auc, roc_auc)

LEVELS = ("frame", "video")
PointFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], float]
"""(labels, scores, frame weights or None) -> value: the weights are a bootstrap resample's draw counts."""


@dataclass(frozen=True)
class MetricSpec:
    """One ranking metric: how to compute it, whether it gets an interval, and how tables show it."""

    name: str
    """Its key in metrics.json (`<name>`, `<name>_ci`), matrix.csv and robustness rows (`<level>_<name>`)."""
    label: str
    point: PointFn
    replicates: Callable[[_Curve], np.ndarray] | None = None
    """Values of many resamples at once from their weighted curve; None: `point` is called per resample."""
    bootstrapped: bool = True
    higher_is_better: bool = True
    fmt: str = ".3f"
    table_levels: tuple[str, ...] = LEVELS
    """The levels the results table gives it a column at."""
    table_ci: bool = False
    """Whether the results table shows its interval (every bootstrapped metric has one in metrics.json)."""
    summary: bool = False
    """Carried by every matrix cell and robustness row, beside the point estimate's interval."""
    extra: Callable[[np.ndarray, np.ndarray], dict[str, Any]] | None = None
    """Further JSON keys of the level report that come with this metric (the EER's threshold)."""

    def format(self, value: Any) -> str:
        return "–" if value is None or value != value else format(float(value), self.fmt)


METRICS: Registry[MetricSpec] = Registry("metric")


def register(spec: MetricSpec) -> MetricSpec:
    return METRICS.register(spec.name, spec)


def specs() -> Iterator[MetricSpec]:
    """The registered specs in registration order (the order of every table's columns)."""
    return (spec for _, spec in METRICS.items())


def summary_specs() -> list[MetricSpec]:
    return [spec for spec in specs() if spec.summary]


def summary_values(result: dict[str, dict[str, Any]]) -> Iterator[tuple[str, Any, list[float] | None]]:
    """(`<level>_<name>`, point, interval or None) of every summary metric of an evaluate_split result,
    level by level: the cells of a matrix row and a robustness row."""
    for level in LEVELS:
        for spec in summary_specs():
            yield f"{level}_{spec.name}", result[level][spec.name], result[level].get(f"{spec.name}_ci")



def summary_row(result: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`<level>_<name>` and `<level>_<name>_ci` of every summary metric: a robustness row's metric fields."""
    row: dict[str, Any] = {}
    for key, point, ci in summary_values(result):
        row.update({key: point, f"{key}_ci": ci})
    return row

PAUC_MAX_FPR = 0.1

register(MetricSpec("auc", "AUC", lambda y, s, w: roc_auc(y, s, weights=w), replicates=_auc_from,
                    table_ci=True, summary=True))
register(MetricSpec("eer", "EER", lambda y, s, w: eer(y, s, w)[0], replicates=lambda c: _eer_from(c)[0],
                    higher_is_better=False, extra=lambda y, s: {"eer_threshold": eer(y, s)[1]}))
register(MetricSpec("ap", "AP", lambda y, s, w: average_precision(y, s, w), replicates=_ap_from,
                    table_levels=("frame",)))
register(MetricSpec("pauc01", f"pAUC@{PAUC_MAX_FPR:g}", lambda y, s, w: partial_auc(y, s, PAUC_MAX_FPR, w),
                    replicates=lambda c: _pauc_from(c, PAUC_MAX_FPR), table_ci=True, summary=True))
