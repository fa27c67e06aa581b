"""Detection metrics at frame and video level, with video-clustered bootstrap intervals.

Frames of one video are strongly correlated, so confidence intervals resample whole videos
(within each class, keeping the real/fake balance of the test set). Which metrics are reported
and bootstrapped is the registry of `measure/specs.py`; each is read from the weighted ROC sweep
of `measure/curve.py`, where a bootstrap resample is just a row of per-frame weights (how often
its video was drawn), so a thousand resamples become a few matrix cumulative sums.

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
from clipforensics.measure.curve import _Sweep, as_arrays, check_scores, eer, require_both_classes, roc_auc
from clipforensics.measure.specs import specs

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


# ---------------------------------------------------------------------------- video level

def video_scores(df: pd.DataFrame, agg: str = "mean") -> pd.DataFrame:
    """One row per video, its frame scores pooled by `agg`: the unit a user actually flags."""
    require_columns(df, ("video", "manipulation", "label", "split", "score"), "video scores")
    reduce = AGGREGATORS.get(agg)
    check_scores(df["score"].to_numpy(dtype=float), "video scores")
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


def frame_video_auc(df: pd.DataFrame, agg: str = "mean", split: str = "test") -> tuple[float, float]:
    """(frame AUC, video AUC) of a scores table: the quick summary that selection and the matrix use."""
    videos = video_scores(df, agg)
    return roc_auc(df["label"], df["score"], split), roc_auc(videos["label"], videos["score"], split)


# ---------------------------------------------------------------------------- fixed threshold

def _ratio(num: int, den: int) -> float:
    """num/den, 0.0 when undefined (sklearn's zero_division=0 convention), so JSON never sees NaN."""
    return num / den if den else 0.0


def threshold_metrics(labels: Any, scores: Any, threshold: float) -> dict[str, float | int]:
    """Confusion counts and rates for the hard decision "fake iff score >= threshold"."""
    y, s = as_arrays(labels, scores, "threshold metrics")
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
    """Per-resample values of every bootstrapped metric (`values[name]`), with the draw counts that define
    each resample.

    `counts[i, j]` is how often group `groups[j]` was drawn in resample i; a frame's weight in
    resample i is the count of its group, so the resampled table can be rebuilt by repetition.
    """

    groups: np.ndarray
    counts: np.ndarray
    codes: np.ndarray
    """Each frame's index into `groups`."""
    values: dict[str, np.ndarray]

    def frame_weights(self, codes: np.ndarray, i: int) -> np.ndarray:
        """Repetition count of every frame (given its group index) in resample i."""
        return self.counts[i, codes]

    def per_resample(self, fn: MetricFn, y: np.ndarray, s: np.ndarray) -> np.ndarray:
        """fn(labels, scores, frame weights) of every resample: a Python loop, for metrics with no curve reducer."""
        return np.array([fn(y, s, self.frame_weights(self.codes, i)) for i in range(self.counts.shape[0])])


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
    """Every bootstrapped metric of every video-level resample; those with a curve reducer (AUC, EER, AP, ...)
    for all resamples at once as weighted ROC sweeps, block by block."""
    y, s = as_arrays(labels, scores, "bootstrap")
    require_both_classes(y, "bootstrap")
    if n_boot < 1:
        raise UserError(f"bootstrap: n_boot must be at least 1, got {n_boot}")
    codes, uniques, group_labels = _group_codes(y, groups, y.size)
    counts = _draw_counts(group_labels, n_boot, np.random.default_rng(seed))
    chosen = [spec for spec in specs() if spec.bootstrapped]
    swept = [spec for spec in chosen if spec.replicates is not None]
    sweep = _Sweep.of(s, y)
    codes_sorted = codes[sweep.order]
    block = max(1, _BLOCK_ELEMENTS // y.size)
    values = {spec.name: np.empty(n_boot) for spec in swept}
    for start in range(0, n_boot, block):
        rows = slice(start, start + block)
        curve = sweep.curve(counts[rows].astype(float)[:, codes_sorted])
        for spec in swept:
            values[spec.name][rows] = spec.replicates(curve)
    reps = BootstrapReplicates(groups=uniques, counts=counts, codes=codes, values=values)
    reps.values.update({spec.name: reps.per_resample(spec.point, y, s) for spec in chosen if spec.replicates is None})
    return reps


def bootstrap_ci(labels: Any, scores: Any, groups: Any, metric_fns: dict[str, MetricFn] | None = None,
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every bootstrapped metric from resampling whole videos within each class.

    `metric_fns` adds further metrics, each called as fn(labels, scores, sample_weight) once per
    resample (a Python loop, so slower than the registered ones with a curve reducer).
    """
    if not 0 < level < 1:
        raise UserError(f"bootstrap: level must be between 0 and 1, got {level}")
    reps = bootstrap_replicates(labels, scores, groups, n_boot=n_boot, seed=seed)
    values = dict(reps.values)
    if metric_fns:
        y, s = as_arrays(labels, scores, "bootstrap")
        values.update({name: reps.per_resample(fn, y, s) for name, fn in metric_fns.items()})
    tail = (1 - level) / 2
    intervals = {}
    for name, vals in values.items():
        lo, hi = np.quantile(vals, [tail, 1 - tail])
        intervals[name] = (float(lo), float(hi))
    return intervals


# ---------------------------------------------------------------------------- reports

def _level_report(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float,
                  n_boot: int, seed: int, what: str) -> dict[str, Any]:
    """Every registered metric for one unit (frames or videos), with intervals, as a JSON-ready dict."""
    y, s = as_arrays(labels, scores, what)
    require_both_classes(y, what)
    report: dict[str, Any] = {"n": int(y.size), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum())}
    for spec in specs():
        report[spec.name] = spec.point(y, s, None)
        report.update(spec.extra(y, s) if spec.extra else {})
    ci = bootstrap_ci(y, s, groups, n_boot=n_boot, seed=seed) if n_boot > 0 else {}
    for spec in specs():
        if spec.bootstrapped:
            report[f"{spec.name}_ci"] = list(ci[spec.name]) if spec.name in ci else None
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
