"""Comparisons a cache makes cheap: video AUC against frames per video, paired differences between runs
scored on the same test set, and where each run's accuracy comes from (threshold transfer).

"LoRA beats the linear probe by 3 points" needs an interval on the difference, not two intervals: both
runs are measured on the same resampled videos (paired bootstrap), and at video level, where videos are
independent, DeLong's test gives a p-value from the placement values of the two correlated AUCs.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from clipforensics.core.errors import UserError
from clipforensics.core.sampling import sample_frames
from clipforensics.measure.curve import _auc_from, _Sweep, roc_auc
from clipforensics.measure.metrics import _draw_counts, bootstrap_ci, threshold_metrics, video_scores
from clipforensics.measure.result import RunResult

ALL = "all"


# ---------------------------------------------------------------------------- frames per video

def parse_counts(spec: tuple[str, ...]) -> list[int | str]:
    """'4,1,all,1' -> [1, 4, 'all']: each count once, increasing, so the table and the curve read left to right."""
    counts: set[int] = set()
    for part in spec:
        if part == ALL:
            continue
        try:
            n = int(part)
        except ValueError:
            raise UserError(f"--frame-budgets takes counts like 1,2,4,8,all; got {part!r}") from None
        if n < 1:
            raise UserError("--frame-budgets counts must be at least 1")
        counts.add(n)
    return [*sorted(counts), *([ALL] if ALL in spec else [])]


def first_frames_spread(test: pd.DataFrame, count: int | str) -> pd.DataFrame:
    """At most `count` frames of each video, evenly spread in natural frame order (the protocol's rule)."""
    return test if count == ALL else sample_frames(test, int(count))


def frames_per_video(run: RunResult, counts: list[int | str], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """Video AUC [CI] using `n` frames of each test video, for each n."""
    rows = []
    for count in counts:
        used = first_frames_spread(run.scores, count)
        videos = video_scores(used, run.video_agg)
        ci = (bootstrap_ci(videos["label"], videos["score"], videos["video"], n_boot=n_boot, seed=seed)["auc"]
              if n_boot else None)
        rows.append({"frames": count, "frames_used": int(len(used)), "video_auc": roc_auc(videos["label"], videos["score"]),
                     "video_auc_ci": list(ci) if ci else None})
    return rows


# ---------------------------------------------------------------------------- DeLong

def placements(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V10 per fake, V01 per real): the share of reals a fake outscores, and of fakes that outscore a real,
    ties counting half (DeLong et al. 1988), from mid-ranks (Sun & Xu 2014) instead of a double loop."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=float)
    pos, neg = s[y], s[~y]
    m, n = pos.size, neg.size
    all_ranks = rankdata(np.concatenate([pos, neg]))
    v10 = (all_ranks[:m] - rankdata(pos)) / n
    v01 = 1.0 - (all_ranks[m:] - rankdata(neg)) / m
    return v10, v01


def delong(labels: Any, scores_a: Any, scores_b: Any) -> dict[str, Any]:
    """DeLong's test of AUC(a) = AUC(b) on the same units (two-sided, normal approximation).

    With fewer than two units in a class the placement variances cannot be estimated, and with a zero variance
    of the difference between runs that do differ there is no normal approximation: z, p and se are None
    then, and `undefined` says why. Two runs that score the units alike (difference and variance 0) get z = 0,
    p = 1."""
    y = np.asarray(labels).astype(int)
    if y.min() == y.max():
        raise UserError("DeLong's test needs real and fake units")
    v10_a, v01_a = placements(y, scores_a)
    v10_b, v01_b = placements(y, scores_b)
    auc_a, auc_b = float(v10_a.mean()), float(v10_b.mean())
    out: dict[str, Any] = {"auc_a": auc_a, "auc_b": auc_b, "diff": auc_a - auc_b}
    if min(v10_a.size, v01_a.size) < 2:
        return {**out, "se": None, "z": None, "p": None,
                "undefined": f"{min(v10_a.size, v01_a.size)} unit in a class: no variance to test with"}
    contrast = np.array([1.0, -1.0])
    cov = np.cov(np.vstack([v10_a, v10_b])) / v10_a.size + np.cov(np.vstack([v01_a, v01_b])) / v01_a.size
    var = float(contrast @ cov @ contrast)
    if var <= 0:
        if out["diff"] == 0:
            return {**out, "se": 0.0, "z": 0.0, "p": 1.0}
        return {**out, "se": None, "z": None, "p": None, "undefined": "zero variance of a non-zero difference"}
    z = out["diff"] / math.sqrt(var)
    return {**out, "se": math.sqrt(var), "z": z, "p": math.erfc(abs(z) / math.sqrt(2))}


# ---------------------------------------------------------------------------- paired bootstrap

def _weighted_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    sweep = _Sweep.of(scores, labels)
    return _auc_from(sweep.curve(weights[:, sweep.order]))


def paired_difference(a: RunResult, b: RunResult, n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict[str, Any]:
    """AUC(a) - AUC(b) at frame and video level, each resample drawing the same videos for both runs."""
    merged = a.scores[["path", "video", "label", "manipulation", "split", "score"]].merge(
        b.scores[["path", "score"]], on="path", suffixes=("_a", "_b"), validate="one_to_one")
    if len(merged) != len(a.scores) or len(merged) != len(b.scores):
        raise UserError(f"{a.name} and {b.name} were not scored on the same test frames: no paired comparison")
    y = merged["label"].to_numpy(float)
    va = video_scores(merged.rename(columns={"score_a": "score"}).drop(columns="score_b"), a.video_agg)
    vb = video_scores(merged.rename(columns={"score_b": "score"}).drop(columns="score_a"), b.video_agg)
    counts = _draw_counts(va["label"].to_numpy(), n_boot, np.random.default_rng(seed)) if n_boot else None
    out: dict[str, Any] = {"a": a.name, "b": b.name}
    frame_video = pd.Categorical(merged["video"], categories=va["video"]).codes
    levels = {"frame": (y, merged["score_a"].to_numpy(), merged["score_b"].to_numpy(), frame_video),
              "video": (va["label"].to_numpy(float), va["score"].to_numpy(), vb["score"].to_numpy(),
                        np.arange(len(va)))}
    tail = (1 - level) / 2
    for name, (labels, sa, sb, video_of) in levels.items():
        diff = roc_auc(labels, sa) - roc_auc(labels, sb)
        entry: dict[str, Any] = {"auc_a": roc_auc(labels, sa), "auc_b": roc_auc(labels, sb), "diff": diff}
        if counts is not None:
            weights = counts[:, video_of].astype(float)
            reps = _weighted_auc(sa, labels, weights) - _weighted_auc(sb, labels, weights)
            lo, hi = np.quantile(reps, [tail, 1 - tail])
            entry["diff_ci"] = [float(lo), float(hi)]
            entry["distinguishable"] = bool(lo > 0 or hi < 0)
        out[name] = entry
    out["video"]["delong"] = delong(va["label"], va["score"], vb["score"])
    return out


def paired_comparisons(runs: list[RunResult], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """Every pair of runs on one data set (they share its test set: the evaluator checked); results of one run
    on several data sets are never paired with each other."""
    return [paired_difference(a, b, n_boot, seed) for a, b in combinations(runs, 2) if a.dataset == b.dataset]


# ---------------------------------------------------------------------------- threshold transfer

def oracle_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The test-label threshold with the highest accuracy: an optimistic bound, never a result.

    Candidates are every distinct score ("fake iff score >= t"; the lowest flags everything) and one just above
    the highest (flags nothing), so the bound is never below the trivial accuracy. The lowest best threshold
    wins. One sort and cumulative sums: n log n."""
    y = np.asarray(labels) == 1
    s = np.asarray(scores, dtype=float)
    order = np.argsort(s, kind="stable")
    values, starts = np.unique(s[order], return_index=True)
    fakes_below = np.concatenate([[0], np.cumsum(y[order])])[starts]
    flagged = s.size - starts
    caught = int(y.sum()) - fakes_below
    correct = caught + (s.size - int(y.sum())) - (flagged - caught)
    correct = np.append(correct, s.size - int(y.sum()))
    thresholds = np.append(values, np.nextafter(values[-1], np.inf) if values.size else 0.5)
    return float(thresholds[int(np.argmax(correct))])


def threshold_transfer(run: RunResult) -> dict[str, Any]:
    """Frame and video accuracy at the validation threshold, at 0.5, and at the test-oracle threshold."""
    out: dict[str, Any] = {}
    videos = video_scores(run.scores, run.video_agg)
    for level, table in (("frame", run.scores), ("video", videos)):
        y, s = table["label"].to_numpy(), table["score"].to_numpy(float)
        oracle = oracle_threshold(y, s)
        out[level] = {rule: {"threshold": t, "accuracy": threshold_metrics(y, s, t)["accuracy"]}
                      for rule, t in (("val", run.threshold), ("fixed 0.5", 0.5), ("test oracle", oracle))}
    return out
