"""Paired comparisons, DeLong, frames per video and threshold transfer, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from clipforensics.core.errors import UserError
from clipforensics.evaluate.compare import (delong, first_frames_spread, frames_per_video, paired_difference,
                                            parse_counts, placements, threshold_transfer)
from clipforensics.evaluate.evaluation import evaluate_run
from clipforensics.evaluate.settings import MeasureSettings


def scores_table(seed: int, shift: float, n_videos: int = 30, frames: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(n_videos):
        label = v % 2
        for f in range(frames):
            for split in ("val", "test"):
                rows.append({"path": f"{split}/{v:03d}/{f:03d}.png", "video": f"{split}/{v:03d}", "label": label,
                             "manipulation": "FaceSwap" if label else "Real_youtube", "split": split,
                             "score": float(1 / (1 + math.exp(-(rng.normal() + shift * label))))})
    return pd.DataFrame(rows)


def result(name: str, df: pd.DataFrame, n_boot: int = 200):
    return evaluate_run(name, df, MeasureSettings(bootstrap=n_boot))


def brute_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong 1988 written out with a double loop over (fake, real) pairs."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

    def psi(x: float, z: float) -> float:
        return 1.0 if x > z else 0.5 if x == z else 0.0

    v10 = np.array([[np.mean([psi(s[i], s[j]) for j in neg]) for i in pos] for s in (a, b)])
    v01 = np.array([[np.mean([psi(s[i], s[j]) for i in pos]) for j in neg] for s in (a, b)])
    auc = v10.mean(axis=1)
    s10 = sum(np.outer(v10[:, k] - auc, v10[:, k] - auc) for k in range(len(pos))) / (len(pos) - 1)
    s01 = sum(np.outer(v01[:, k] - auc, v01[:, k] - auc) for k in range(len(neg))) / (len(neg) - 1)
    var = s10[0, 0] / len(pos) + s01[0, 0] / len(neg) + s10[1, 1] / len(pos) + s01[1, 1] / len(neg) \
        - 2 * (s10[0, 1] / len(pos) + s01[0, 1] / len(neg))
    z = (auc[0] - auc[1]) / math.sqrt(var)
    return z, math.erfc(abs(z) / math.sqrt(2))


def test_delong_matches_a_double_loop_with_ties():
    rng = np.random.default_rng(3)
    y = np.array([0] * 17 + [1] * 13)
    a = np.round(rng.normal(size=30) + y, 1)  # rounding makes ties
    b = np.round(rng.normal(size=30) + 0.5 * y + 0.3 * a, 1)
    got = delong(y, a, b)
    z, p = brute_delong(y, a, b)
    assert got["z"] == pytest.approx(z, rel=1e-9) and got["p"] == pytest.approx(p, rel=1e-9)
    v10, v01 = placements(y, a)
    from sklearn.metrics import roc_auc_score
    assert v10.mean() == pytest.approx(roc_auc_score(y, a)) == pytest.approx(v01.mean())


def test_run_against_itself_is_zero_with_a_zero_interval():
    run = result("a", scores_table(0, 1.5))
    pair = paired_difference(run, run, n_boot=200)
    for level in ("frame", "video"):
        assert pair[level]["diff"] == 0 and pair[level]["diff_ci"] == [0.0, 0.0]
        assert not pair[level]["distinguishable"]
    assert pair["video"]["delong"]["p"] == 1.0


def test_paired_interval_is_narrower_than_unpaired_and_centred_on_the_difference():
    base = scores_table(0, 0.5, n_videos=60)
    better = base.assign(score=base["score"] + 0.05 * base["label"])
    a, b = result("better", better), result("base", base)
    pair = paired_difference(a, b, n_boot=300)
    lo, hi = pair["video"]["diff_ci"]
    assert lo <= pair["video"]["diff"] <= hi and pair["video"]["diff"] > 0
    assert 0 < a.metrics["video"]["auc"] - b.metrics["video"]["auc"] < 0.2
    assert hi - lo < np.diff(b.metrics["video"]["auc_ci"])[0]


def test_frames_per_video_all_equals_the_video_auc_and_counts_spread():
    run = result("a", scores_table(1, 1.0, frames=7))
    rows = frames_per_video(run, [1, 3, "all"], n_boot=0, seed=0)
    assert rows[-1]["video_auc"] == pytest.approx(run.metrics["video"]["auc"])
    one = first_frames_spread(run.scores, 3)
    assert one.groupby("video").size().eq(3).all()
    assert sorted(one[one.video == "test/000"]["path"].str[-7:-4].astype(int)) == [0, 3, 6]
    assert rows[0]["frames_used"] == run.scores["video"].nunique()


def test_frame_counts_are_each_taken_once_in_increasing_order():
    """The curve is drawn in the order of the counts: '2,1,all,1' must not draw 2 -> 1 -> all -> 1."""
    assert parse_counts(("2", "1", "all", "1", "all")) == [1, 2, "all"]
    with pytest.raises(UserError, match="at least 1"):
        parse_counts(("0",))


def test_threshold_transfer_names_the_oracle_and_it_is_the_best_accuracy():
    run = result("a", scores_table(2, 1.0))
    t = threshold_transfer(run)
    frame = t["frame"]
    assert set(frame) == {"val", "fixed 0.5", "test oracle"}
    assert frame["test oracle"]["accuracy"] >= max(frame["val"]["accuracy"], frame["fixed 0.5"]["accuracy"])
    assert frame["val"]["threshold"] == run.threshold


# ---------------------------------------------------------------- oracle and DeLong limits (issue 22, item 4)

def brute_oracle(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) over every distinct score and 'flag nothing', the lowest best threshold."""
    candidates = [*np.unique(s), np.inf]
    accuracy = [float(np.mean((s >= t) == (y == 1))) for t in candidates]
    best = int(np.argmax(accuracy))
    return candidates[best], accuracy[best]


@pytest.mark.parametrize("seed", range(6))
def test_oracle_threshold_equals_the_brute_force_with_both_extremes(seed):
    from clipforensics.evaluate.compare import oracle_threshold
    from clipforensics.measure.metrics import threshold_metrics

    rng = np.random.default_rng(seed)
    y = (rng.random(40) < [0.1, 0.5, 0.9, 0.3, 0.7, 0.5][seed]).astype(int)
    s = np.round(rng.random(40), 1)  # ties
    threshold, accuracy = brute_oracle(y, s)
    got = oracle_threshold(y, s)
    assert threshold_metrics(y, s, got)["accuracy"] == accuracy
    assert got == threshold or (threshold == np.inf and got > s.max())
    assert accuracy >= max(y.mean(), 1 - y.mean()), "never below flagging everything or nothing"


def test_oracle_flags_nothing_where_that_is_best_and_scales():
    import time

    from clipforensics.evaluate.compare import oracle_threshold

    y, s = np.array([0, 0, 0, 1]), np.array([0.2, 0.5, 0.9, 0.1])
    assert oracle_threshold(y, s) > 0.9, "flag nothing: 3 of 4 right, every score threshold does worse"
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 400_000), rng.random(400_000)
    start = time.perf_counter()
    oracle_threshold(y, s)
    assert time.perf_counter() - start < 2.0, "n log n: 400k rows in well under the quadratic's minutes"


def test_delong_is_undefined_with_one_video_in_a_class_or_zero_variance():
    from clipforensics.report.comparisons import delong_cell

    one = delong(np.array([0, 0, 0, 1]), np.array([0.1, 0.2, 0.3, 0.9]), np.array([0.3, 0.1, 0.2, 0.15]))
    assert one["z"] is None and one["p"] is None and "1 unit in a class" in one["undefined"]
    flat = delong(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.5, 0.5, 0.5, 0.5]))
    assert flat["diff"] == 0.5 and flat["z"] is None and "zero variance" in flat["undefined"]
    assert delong_cell(flat) == "undefined (zero variance of a non-zero difference)"
    same = delong(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert (same["z"], same["p"]) == (0.0, 1.0)
