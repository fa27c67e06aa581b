"""The weighted ROC sweep every ranking metric is read from, and the input checks in front of it.

The scores are sorted once; a weighting of the frames (all ones for the point estimate, draw counts for
a bootstrap resample) becomes one row of per-threshold counts, so a thousand resamples are a few matrix
cumulative sums. Each metric here is a reducer from those counts to one value per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clipforensics.core.errors import UserError


# ---------------------------------------------------------------------------- input checks

def check_scores(scores: np.ndarray, what: str) -> None:
    """NaN or infinite scores would silently corrupt the sort order, so they stop the run."""
    n_nan = int(np.isnan(scores).sum())
    if n_nan:
        raise UserError(f"{what}: {n_nan} NaN score(s) out of {scores.size}; fix the scoring step first")
    n_inf = int(np.isinf(scores).sum())
    if n_inf:
        raise UserError(f"{what}: {n_inf} infinite score(s) out of {scores.size}")


def as_arrays(labels: Any, scores: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated 1-D float arrays: labels exactly 0/1, scores finite, same length, non-empty."""
    y = np.asarray(labels, dtype=float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise UserError(f"{what}: {y.size} labels but {s.size} scores")
    if y.size == 0:
        raise UserError(f"{what}: no rows to evaluate")
    bad = int((~np.isin(y, (0.0, 1.0))).sum())
    if bad:
        raise UserError(f"{what}: {bad} label(s) are not 0 (real) or 1 (fake)")
    check_scores(s, what)
    return y, s


def require_both_classes(y: np.ndarray, what: str, split: str = "test") -> None:
    n_fake = int(y.sum())
    if n_fake == 0 or n_fake == y.size:
        only = "fake" if n_fake else "real"
        raise UserError(f"{what} undefined: {split} set has only {only} rows ({y.size})")


# ---------------------------------------------------------------------------- weighted ROC core

@dataclass(frozen=True)
class _Curve:
    """Weighted counts per distinct threshold (descending), one row per weighting of the frames.

    `d_tp`/`d_fp` are the fakes/reals scoring exactly at each threshold, `tp`/`fp` those at or above it.
    """

    d_tp: np.ndarray
    d_fp: np.ndarray
    tp: np.ndarray
    fp: np.ndarray


@dataclass(frozen=True)
class _Sweep:
    """Scores sorted once (descending) with tied scores collapsed into blocks starting at `starts`."""

    order: np.ndarray
    y_sorted: np.ndarray
    starts: np.ndarray
    thresholds: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray) -> "_Sweep":
        order = np.argsort(-scores, kind="stable")
        s_sorted = scores[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(s_sorted) != 0) + 1])
        return cls(order=order, y_sorted=labels[order], starts=starts, thresholds=s_sorted[starts])

    def curve(self, weights_sorted: np.ndarray) -> _Curve:
        """Counts for each row of frame weights (given in sorted order)."""
        fake = weights_sorted * self.y_sorted
        if self.starts.size == self.y_sorted.size:  # no ties: every frame is its own threshold
            d_tp, d_all = fake, weights_sorted
        else:
            d_tp = np.add.reduceat(fake, self.starts, axis=1)
            d_all = np.add.reduceat(weights_sorted, self.starts, axis=1)
        d_fp = d_all - d_tp
        return _Curve(d_tp=d_tp, d_fp=d_fp, tp=np.cumsum(d_tp, axis=1), fp=np.cumsum(d_fp, axis=1))


def _auc_from(c: _Curve) -> np.ndarray:
    """Mann-Whitney AUC: each real counts the fakes above it, plus half of those tied with it."""
    return (c.d_fp * (c.tp - 0.5 * c.d_tp)).sum(axis=1) / (c.tp[:, -1] * c.fp[:, -1])


def _ap_from(c: _Curve) -> np.ndarray:
    """Step-wise average precision, sum of recall increments times precision (sklearn's definition)."""
    predicted = c.tp + c.fp
    precision = np.divide(c.tp, predicted, out=np.zeros_like(c.tp), where=predicted > 0)
    return (c.d_tp * precision).sum(axis=1) / c.tp[:, -1]


def _eer_from(c: _Curve, thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """EER where the ROC polyline crosses FPR = FNR, interpolated inside the bracketing segment.

    Sign tests use D = FP*P + TP*N - P*N (proportional to FPR - FNR), exact for integer weights,
    so a crossing that lands on a ROC vertex is found exactly rather than up to rounding.
    """
    rows = np.arange(c.tp.shape[0])
    pos, neg = c.tp[:, -1:], c.fp[:, -1:]
    zero = np.zeros((rows.size, 1))
    tp0 = np.hstack([zero, c.tp])
    fp0 = np.hstack([zero, c.fp])
    d = fp0 * pos + tp0 * neg - pos * neg
    hi = np.argmax(d >= 0, axis=1)
    lo = hi - 1
    d_lo, d_hi = d[rows, lo], d[rows, hi]
    t = -d_lo / (d_hi - d_lo)
    fpr = fp0 / neg
    rate = fpr[rows, lo] + t * (fpr[rows, hi] - fpr[rows, lo])
    if thresholds is None:
        return rate, None
    # The (0,0) end of the ROC has threshold +inf; clipping it to the top score keeps a crossing
    # in the first segment usable (it flags the top-scored rows) instead of flagging nothing.
    th = np.concatenate([thresholds[:1], thresholds])
    return rate, th[lo] + t * (th[hi] - th[lo])


def _pauc_from(c: _Curve, max_fpr: float) -> np.ndarray:
    """ROC area over FPR in [0, max_fpr], the segment crossing max_fpr cut by linear interpolation, then
    McClish-standardised (0.5 chance, 1 perfect) exactly as sklearn's roc_auc_score(max_fpr=...).

    Only the leading segments some row starts below max_fpr are kept, so the bootstrap's blocks stay small.
    """
    zero = np.zeros((c.tp.shape[0], 1))
    fpr = np.hstack([zero, c.fp]) / c.fp[:, -1:]
    beyond = (fpr[:, :-1] >= max_fpr).all(axis=0)
    stop = int(np.argmax(beyond)) if beyond.any() else beyond.size
    fpr = fpr[:, :stop + 1]
    tpr = np.hstack([zero, c.tp[:, :stop]]) / c.tp[:, -1:]
    x0, x1, y0, y1 = fpr[:, :-1], fpr[:, 1:], tpr[:, :-1], tpr[:, 1:]
    crossing = (x0 < max_fpr) & (x1 > max_fpr)
    slope = np.divide(y1 - y0, x1 - x0, out=np.zeros_like(y0), where=crossing)
    y_cut = np.where(crossing, y0 + slope * (max_fpr - x0), y1)
    width = np.clip(np.minimum(x1, max_fpr) - x0, 0.0, None)
    partial = (width * (y0 + y_cut) / 2).sum(axis=1)
    min_area = 0.5 * max_fpr ** 2
    return 0.5 * (1 + (partial - min_area) / (max_fpr - min_area))


def point_sweep(labels: Any, scores: Any, what: str, split: str = "test",
                weights: Any = None) -> tuple[_Sweep, _Curve]:
    """The checked sweep of one table and its curve, every row weighted 1 unless `weights` are given."""
    y, s = as_arrays(labels, scores, what)
    require_both_classes(y, what, split)
    sweep = _Sweep.of(s, y)
    w = np.ones(y.size) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.shape != y.shape:
        raise UserError(f"{what}: {w.size} weights for {y.size} rows")
    return sweep, sweep.curve(w[sweep.order][None, :])


# ---------------------------------------------------------------------------- point estimates

def roc_auc(labels: Any, scores: Any, split: str = "test", weights: Any = None) -> float:
    """Area under the ROC curve (ties count half), identical to sklearn's roc_auc_score.

    `split` names the rows in the message when they hold one class only (validation rows are not a test set).
    """
    _, curve = point_sweep(labels, scores, "AUC", split, weights)
    return float(_auc_from(curve)[0])


def eer(labels: Any, scores: Any, weights: Any = None) -> tuple[float, float]:
    """(equal error rate, threshold) interpolated on the ROC, not snapped to the nearest ROC point."""
    sweep, curve = point_sweep(labels, scores, "EER", weights=weights)
    rate, threshold = _eer_from(curve, sweep.thresholds)
    return float(rate[0]), float(threshold[0])


def average_precision(labels: Any, scores: Any, weights: Any = None) -> float:
    """Average precision with fakes as positives, identical to sklearn's average_precision_score."""
    _, curve = point_sweep(labels, scores, "AP", weights=weights)
    return float(_ap_from(curve)[0])


def partial_auc(labels: Any, scores: Any, max_fpr: float, weights: Any = None) -> float:
    """Standardised partial AUC up to `max_fpr`, identical to sklearn's roc_auc_score(max_fpr=...):
    how well fakes rank above reals where few reals are flagged, the regime a deployed detector runs in."""
    if not 0 < max_fpr < 1:
        raise UserError(f"partial AUC: max_fpr must be between 0 and 1, got {max_fpr}")
    _, curve = point_sweep(labels, scores, "partial AUC", weights=weights)
    return float(_pauc_from(curve, max_fpr)[0])


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct score, from (0, 0) to (1, 1): the curve whose area `roc_auc` reports.

    Tied scores form one step, drawn as a diagonal segment (the half credit ties get in the AUC).
    """
    _, curve = point_sweep(labels, scores, "ROC")
    fp = np.concatenate([[0.0], curve.fp[0]])
    tp = np.concatenate([[0.0], curve.tp[0]])
    return fp / fp[-1], tp / tp[-1]
