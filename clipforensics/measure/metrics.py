"""Detection metrics at frame and video level, with video-clustered bootstrap intervals.

Frames of one video are strongly correlated, so confidence intervals resample whole videos
(within each class, keeping the real/fake balance of the test set). Every ranking metric is
computed from one weighted ROC sweep: the scores are sorted once, and each bootstrap resample
is just a row of per-frame weights (how often its video was drawn), so a thousand resamples
become a few matrix cumulative sums instead of a thousand sklearn calls.

All results are plain dicts of Python floats/ints/lists so they can go straight into JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.data.scores import require_columns

VAL_SPLIT = "val"
DEFAULT_THRESHOLD = 0.5
# Below this many videos in a class, the bootstrap intervals are too wide to separate scorers a few points apart.
FEW_VIDEOS = 30
# Cap on elements per (resamples x frames) block: the bootstrap peaks near 340 MiB (about ten float64
# temporaries per element, measured by bench/memory.py) however many frames there are.
_BLOCK_ELEMENTS = 4_000_000

AGGREGATORS: Registry[Callable[[np.ndarray], float]] = Registry("video aggregator")
AGGREGATORS.register("mean", np.mean)
AGGREGATORS.register("median", np.median)
AGGREGATORS.register("max", np.max)

# Registry names pandas reduces natively (fast); other registry entries are called per video.
_PANDAS_REDUCTIONS = frozenset({"mean", "median", "max"})

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


# ---------------------------------------------------------------------------- input checks

def _check_scores(scores: np.ndarray, what: str) -> None:
    """NaN or infinite scores would silently corrupt the sort order, so they stop the run."""
    n_nan = int(np.isnan(scores).sum())
    if n_nan:
        raise UserError(f"{what}: {n_nan} NaN score(s) out of {scores.size}; fix the scoring step first")
    n_inf = int(np.isinf(scores).sum())
    if n_inf:
        raise UserError(f"{what}: {n_inf} infinite score(s) out of {scores.size}")


def _as_arrays(labels: Any, scores: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
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
    _check_scores(s, what)
    return y, s


def _require_both_classes(y: np.ndarray, what: str, split: str = "test") -> None:
    n_fake = int(y.sum())
    if n_fake == 0 or n_fake == y.size:
        only = "fake" if n_fake else "real"
        raise UserError(f"{what} undefined: {split} set has only {only} rows ({y.size})")


# ---------------------------------------------------------------------------- video level

def video_scores(df: pd.DataFrame, agg: str = "mean") -> pd.DataFrame:
    """One row per video, its frame scores pooled by `agg`: the unit a user actually flags."""
    require_columns(df, ("video", "manipulation", "label", "split", "score"), "video scores")
    reduce = AGGREGATORS.get(agg)
    _check_scores(df["score"].to_numpy(dtype=float), "video scores")
    grouped = df.groupby("video", sort=True, observed=True)
    n_labels = grouped["label"].nunique()
    mixed = n_labels[n_labels > 1]
    if len(mixed):
        shown = ", ".join(map(str, mixed.index[:3]))
        raise UserError(f"{len(mixed)} video(s) have frames with both labels (e.g. {shown})")
    out = grouped.agg(
        manipulation=("manipulation", "first"),
        label=("label", "first"),
        split=("split", "first"),
        score=("score", agg if agg in _PANDAS_REDUCTIONS else reduce),
        n_frames=("score", "size"),
    ).reset_index()
    out["score"] = out["score"].astype(float)
    return out[["video", "manipulation", "label", "split", "score", "n_frames"]]


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


def _point_sweep(labels: Any, scores: Any, what: str, split: str = "test") -> tuple[_Sweep, _Curve]:
    y, s = _as_arrays(labels, scores, what)
    _require_both_classes(y, what, split)
    sweep = _Sweep.of(s, y)
    return sweep, sweep.curve(np.ones((1, y.size)))


def roc_auc(labels: Any, scores: Any, split: str = "test") -> float:
    """Area under the ROC curve (ties count half), identical to sklearn's roc_auc_score.

    `split` names the rows in the message when they hold one class only (validation rows are not a test set).
    """
    _, curve = _point_sweep(labels, scores, "AUC", split)
    return float(_auc_from(curve)[0])


def eer(labels: Any, scores: Any) -> tuple[float, float]:
    """(equal error rate, threshold) interpolated on the ROC, not snapped to the nearest ROC point."""
    sweep, curve = _point_sweep(labels, scores, "EER")
    rate, threshold = _eer_from(curve, sweep.thresholds)
    return float(rate[0]), float(threshold[0])


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct score, from (0, 0) to (1, 1): the curve whose area `roc_auc` reports.

    Tied scores form one step, drawn as a diagonal segment (the half credit ties get in the AUC).
    """
    _, curve = _point_sweep(labels, scores, "ROC")
    fp = np.concatenate([[0.0], curve.fp[0]])
    tp = np.concatenate([[0.0], curve.tp[0]])
    return fp / fp[-1], tp / tp[-1]


def frame_video_auc(df: pd.DataFrame, agg: str = "mean", split: str = "test") -> tuple[float, float]:
    """(frame AUC, video AUC) of a scores table: the quick summary that selection and the matrix use."""
    videos = video_scores(df, agg)
    return roc_auc(df["label"], df["score"], split), roc_auc(videos["label"], videos["score"], split)


def average_precision(labels: Any, scores: Any) -> float:
    """Average precision with fakes as positives, identical to sklearn's average_precision_score."""
    _, curve = _point_sweep(labels, scores, "AP")
    return float(_ap_from(curve)[0])


# ---------------------------------------------------------------------------- fixed threshold

def _ratio(num: int, den: int) -> float:
    """num/den, 0.0 when undefined (sklearn's zero_division=0 convention), so JSON never sees NaN."""
    return num / den if den else 0.0


def threshold_metrics(labels: Any, scores: Any, threshold: float) -> dict[str, float | int]:
    """Confusion counts and rates for the hard decision "fake iff score >= threshold"."""
    y, s = _as_arrays(labels, scores, "threshold metrics")
    fake = y == 1
    flagged = s >= threshold
    tp = int(np.sum(flagged & fake))
    fp = int(np.sum(flagged & ~fake))
    fn = int(np.sum(~flagged & fake))
    tn = int(np.sum(~flagged & ~fake))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    return {
        "threshold": float(threshold),
        "accuracy": (tp + tn) / y.size,
        "balanced_accuracy": (recall + specificity) / 2,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


THRESHOLD_RULES: Registry[Callable[[np.ndarray, np.ndarray], float]] = Registry("threshold rule")
THRESHOLD_RULES.register("eer", lambda labels, scores: eer(labels, scores)[1])


def choose_threshold(val_df: pd.DataFrame, rule: str = "eer", *, val_split: str = VAL_SPLIT) -> tuple[float, str]:
    """Decision threshold from validation frames only, so test labels never tune it.

    Returns (threshold, note); the note says how it was picked and is a warning when there
    were no validation rows and the fixed 0.5 fallback was used.
    """
    pick = THRESHOLD_RULES.get(rule)
    require_columns(val_df, ("label", "score", "split"), "choose threshold")
    val = val_df[val_df["split"] == val_split]
    if val.empty:
        return DEFAULT_THRESHOLD, f"no validation rows: threshold {DEFAULT_THRESHOLD}"
    if val["label"].nunique() < 2:
        only = "fake" if int(val["label"].iloc[0]) else "real"
        raise UserError(f"the validation rows have only {only} videos ({len(val)} frames): no threshold can be "
                        "chosen on them; give a validation split with both classes")
    threshold = pick(val["label"].to_numpy(), val["score"].to_numpy())
    return threshold, f"{rule.upper()} threshold {threshold:.6g} from {len(val)} validation frames"


# ---------------------------------------------------------------------------- bootstrap

@dataclass(frozen=True)
class BootstrapReplicates:
    """Per-resample metric values, with the draw counts that define each resample.

    `counts[i, j]` is how often group `groups[j]` was drawn in resample i; a frame's weight in
    resample i is the count of its group, so the resampled table can be rebuilt by repetition.
    """

    groups: np.ndarray
    counts: np.ndarray
    auc: np.ndarray
    eer: np.ndarray
    ap: np.ndarray

    def frame_weights(self, codes: np.ndarray, i: int) -> np.ndarray:
        """Repetition count of every frame (given its group index) in resample i."""
        return self.counts[i, codes]


def _group_codes(y: np.ndarray, groups: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame -> group index, unique groups, label of each group); a group must be one class."""
    g = np.asarray(groups).ravel()
    if g.size != n:
        raise UserError(f"bootstrap: {g.size} group ids for {n} rows")
    codes, uniques = pd.factorize(g)
    if (codes < 0).any():
        raise UserError(f"bootstrap: {int((codes < 0).sum())} row(s) have no video id")
    size = np.bincount(codes)
    n_fake = np.bincount(codes, weights=y)
    mixed = int(((n_fake > 0) & (n_fake < size)).sum())
    if mixed:
        raise UserError(f"{mixed} video(s) have frames with both labels")
    return codes, np.asarray(uniques), (n_fake > 0).astype(int)


def _draw_counts(group_labels: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_groups) draw counts, resampling real and fake groups separately (class sizes fixed)."""
    n_groups = group_labels.size
    flat = np.zeros(n_boot * n_groups, dtype=np.int64)
    offsets = (np.arange(n_boot) * n_groups)[:, None]
    for cls in (0, 1):
        members = np.flatnonzero(group_labels == cls)
        picks = members[rng.integers(0, members.size, size=(n_boot, members.size))]
        flat += np.bincount((picks + offsets).ravel(), minlength=flat.size)
    return flat.reshape(n_boot, n_groups)


def bootstrap_replicates(labels: Any, scores: Any, groups: Any, n_boot: int = 1000,
                         seed: int = 0) -> BootstrapReplicates:
    """AUC, EER and AP of every video-level resample, all resamples at once as weighted ROC sweeps."""
    y, s = _as_arrays(labels, scores, "bootstrap")
    _require_both_classes(y, "bootstrap")
    if n_boot < 1:
        raise UserError(f"bootstrap: n_boot must be at least 1, got {n_boot}")
    codes, uniques, group_labels = _group_codes(y, groups, y.size)
    counts = _draw_counts(group_labels, n_boot, np.random.default_rng(seed))
    sweep = _Sweep.of(s, y)
    codes_sorted = codes[sweep.order]
    block = max(1, _BLOCK_ELEMENTS // y.size)
    auc, rate, ap = (np.empty(n_boot) for _ in range(3))
    for start in range(0, n_boot, block):
        rows = slice(start, start + block)
        curve = sweep.curve(counts[rows].astype(float)[:, codes_sorted])
        auc[rows] = _auc_from(curve)
        rate[rows] = _eer_from(curve)[0]
        ap[rows] = _ap_from(curve)
    return BootstrapReplicates(groups=uniques, counts=counts, auc=auc, eer=rate, ap=ap)


def bootstrap_ci(labels: Any, scores: Any, groups: Any, metric_fns: dict[str, MetricFn] | None = None,
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals for AUC, EER and AP from resampling whole videos within each class.

    `metric_fns` adds further metrics, each called as fn(labels, scores, sample_weight) once per
    resample (a Python loop, so slower than the built-in three).
    """
    if not 0 < level < 1:
        raise UserError(f"bootstrap: level must be between 0 and 1, got {level}")
    reps = bootstrap_replicates(labels, scores, groups, n_boot=n_boot, seed=seed)
    values: dict[str, np.ndarray] = {"auc": reps.auc, "eer": reps.eer, "ap": reps.ap}
    if metric_fns:
        y, s = _as_arrays(labels, scores, "bootstrap")
        codes = pd.factorize(np.asarray(groups).ravel())[0]
        for name, fn in metric_fns.items():
            values[name] = np.array([fn(y, s, reps.frame_weights(codes, i)) for i in range(n_boot)])
    tail = (1 - level) / 2
    intervals = {}
    for name, vals in values.items():
        lo, hi = np.quantile(vals, [tail, 1 - tail])
        intervals[name] = (float(lo), float(hi))
    return intervals


# ---------------------------------------------------------------------------- reports

def _level_report(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float,
                  n_boot: int, seed: int, what: str) -> dict[str, Any]:
    """All metrics for one unit (frames or videos) as a JSON-ready dict."""
    y, s = _as_arrays(labels, scores, what)
    _require_both_classes(y, what)
    rate, eer_threshold = eer(y, s)
    report: dict[str, Any] = {
        "n": int(y.size),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        "auc": roc_auc(y, s),
        "eer": rate,
        "eer_threshold": eer_threshold,
        "ap": average_precision(y, s),
    }
    ci = bootstrap_ci(y, s, groups, n_boot=n_boot, seed=seed) if n_boot > 0 else {}
    for name in ("auc", "eer", "ap"):
        report[f"{name}_ci"] = list(ci[name]) if name in ci else None
    report.update(threshold_metrics(y, s, threshold))
    return report


def evaluate_split(df: pd.DataFrame, *, threshold: float, video_agg: str = "mean", n_boot: int = 1000,
                   seed: int = 0) -> dict[str, dict[str, Any]]:
    """Frame- and video-level metrics of the given (test) rows; CIs resample videos in both."""
    require_columns(df, ("video", "manipulation", "label", "split", "score"), "evaluate")
    if df.empty:
        raise UserError("evaluate: no test rows")
    frame = _level_report(df["label"].to_numpy(), df["score"].to_numpy(), df["video"].to_numpy(),
                          threshold, n_boot, seed, "frame-level")
    frame["n_videos"] = int(df["video"].nunique())
    videos = video_scores(df, video_agg)
    video = _level_report(videos["label"].to_numpy(), videos["score"].to_numpy(), videos["video"].to_numpy(),
                          threshold, n_boot, seed, "video-level")
    video["agg"] = video_agg
    return {"frame": frame, "video": video}


def per_manipulation(df: pd.DataFrame, **kw: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """evaluate_split of all real rows against each fake manipulation alone, to see which ones fool the model."""
    require_columns(df, ("manipulation", "label"), "per-manipulation")
    real = df[df["label"] == 0]
    fake = df[df["label"] == 1]
    if real.empty or fake.empty:
        only = "fake" if real.empty else "real"
        raise UserError(f"per-manipulation undefined: test set has only {only} rows ({len(df)})")
    return {str(m): evaluate_split(pd.concat([real, rows]), **kw)
            for m, rows in fake.groupby("manipulation", sort=True)}
