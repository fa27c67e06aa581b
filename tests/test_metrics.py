"""Metrics against scikit-learn, an independent EER brute force, and answers worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from clipforensics.measure import curve, metrics
from clipforensics.core.errors import UserError


def random_scores(seed: int, n: int = 200, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes; `ties` rounds scores to one decimal so many of them coincide."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * labels)))
    return labels, np.round(scores, 1) if ties else scores


def scores_table(videos: list[tuple[str, int, str, list[float]]], split: str = "test") -> pd.DataFrame:
    """Frame rows from (video, label, manipulation, frame scores)."""
    rows = [
        {"path": f"{v}/{i}.png", "video": v, "manipulation": manip, "label": label, "split": split, "score": s}
        for v, label, manip, frame_scores in videos
        for i, s in enumerate(frame_scores)
    ]
    return pd.DataFrame(rows)


def synthetic_table(seed: int, n_videos: int, n_frames: int, split: str = "test") -> pd.DataFrame:
    """Videos per class with a per-video random effect, so frames within a video are correlated."""
    rng = np.random.default_rng(seed)
    videos = []
    for label, manip in ((0, "real"), (1, "Deepfakes")):
        for v in range(n_videos):
            logit = rng.normal(1.0 * label, 1.0) + rng.normal(0, 1.0, n_frames)
            videos.append((f"{manip}_{v}", label, manip, list(1 / (1 + np.exp(-logit)))))
    return scores_table(videos, split)


# Hand example: 3 real and 3 fake videos, 2 frames each.
#   real r1 [0.1, 0.3] mean 0.2 | r2 [0.2, 0.6] mean 0.4 | r3 [0.5, 0.9] mean 0.7
#   fake f1 [0.75, 0.95] mean 0.85 | f2 [0.3, 0.8] mean 0.55 | f3 [0.45, 0.65] mean 0.55
TINY = [
    ("r1", 0, "real", [0.1, 0.3]),
    ("r2", 0, "real", [0.2, 0.6]),
    ("r3", 0, "real", [0.5, 0.9]),
    ("f1", 1, "Deepfakes", [0.75, 0.95]),
    ("f2", 1, "Face2Face", [0.3, 0.8]),
    ("f3", 1, "Face2Face", [0.45, 0.65]),
]
# Frame AUC: reals below each fake (ties 1/2): 0.95->6, 0.8->5, 0.75->5, 0.65->5, 0.45->3, 0.3->2+0.5
#   = 26.5 of 36 pairs.
TINY_FRAME_AUC = 26.5 / 36
# Video AUC: 0.85 beats 3 reals, each 0.55 beats 2 (0.2, 0.4) = 7 of 9 pairs.
TINY_VIDEO_AUC = 7 / 9
# Frame ROC as (FP, TP) counts, P = N = 6, descending thresholds:
#   (0,0) .95 (0,1) .9 (1,1) .8 (1,2) .75 (1,3) .65 (1,4) .6 (2,4) ...
#   FP + TP = 6 first at threshold 0.6 (a vertex): EER = FPR = FNR = 2/6, threshold 0.6.
TINY_FRAME_EER, TINY_FRAME_EER_THR = 1 / 3, 0.6
# Video ROC, P = N = 3: (0,0) .85 (0,1) .7 (1,1) .55 (1,3) .4 (2,3) .2 (3,3).
#   FPR - FNR goes -1/3 at (1,1) to +1/3 at (1,3): crossing halfway, FPR stays 1/3,
#   FNR = 1 - (1 + 0.5*2)/3 = 1/3; threshold = 0.7 + 0.5*(0.55 - 0.7) = 0.625.
TINY_VIDEO_EER, TINY_VIDEO_EER_THR = 1 / 3, 0.625
# Frames at threshold 0.5 (fake iff score >= 0.5): fakes flagged .95 .8 .75 .65 -> TP 4, FN 2;
#   reals flagged .9 .6 .5 -> FP 3, TN 3. accuracy 7/12, precision 4/7, recall 4/6,
#   specificity 3/6, balanced (2/3 + 1/2)/2 = 7/12, F1 = 2*4/(2*4 + 3 + 2) = 8/13.
TINY_FRAME_AT_05 = {"tp": 4, "fn": 2, "fp": 3, "tn": 3, "accuracy": 7 / 12, "precision": 4 / 7,
                    "recall": 4 / 6, "specificity": 3 / 6, "balanced_accuracy": 7 / 12, "f1": 8 / 13}
# Videos at 0.5: fakes .85 .55 .55 all flagged (TP 3, FN 0); reals .7 flagged (FP 1, TN 2).
#   accuracy 5/6, precision 3/4, recall 1, F1 = 6/(6 + 1) = 6/7.
TINY_VIDEO_AT_05 = {"tp": 3, "fn": 0, "fp": 1, "tn": 2, "accuracy": 5 / 6, "precision": 3 / 4,
                    "recall": 1.0, "f1": 6 / 7}


# ---------------------------------------------------------------------------- against sklearn

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_ap_match_sklearn(seed: int, ties: bool) -> None:
    labels, scores = random_scores(seed, ties=ties)
    assert metrics.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert curve.average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12)


def test_auc_allows_scores_outside_unit_interval() -> None:
    labels, scores = random_scores(3)
    logits = np.log(scores / (1 - scores)) * 5
    assert metrics.roc_auc(labels, logits) == pytest.approx(roc_auc_score(labels, logits), abs=1e-12)


@pytest.mark.parametrize("threshold", [-1.0, 0.3, 0.5, 0.71, 2.0])
def test_threshold_metrics_match_sklearn(threshold: float) -> None:
    labels, scores = random_scores(7)
    scores = scores * 3 - 1  # outside [0, 1] on purpose
    pred = (scores >= threshold).astype(int)
    got = metrics.threshold_metrics(labels, scores, threshold)
    assert got["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, pred))
    assert got["f1"] == pytest.approx(f1_score(labels, pred, zero_division=0))
    assert got["precision"] == pytest.approx(precision_score(labels, pred, zero_division=0))
    assert got["recall"] == pytest.approx(recall_score(labels, pred, zero_division=0))
    assert got["specificity"] == pytest.approx(recall_score(1 - labels, 1 - pred, zero_division=0))
    assert got["tp"] + got["fp"] + got["tn"] + got["fn"] == len(labels)


# ---------------------------------------------------------------------------- EER

def dense_roc_eer(labels: np.ndarray, scores: np.ndarray, per_segment: int = 4001) -> tuple[float, float]:
    """Brute force: walk sklearn's ROC polyline densely, take the point nearest FPR = 1 - TPR."""
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    thr = np.where(np.isinf(thr), np.max(scores), thr)
    u = np.linspace(0, 1, per_segment)[None, :]
    xs = (fpr[:-1, None] + u * np.diff(fpr)[:, None]).ravel()
    ys = (tpr[:-1, None] + u * np.diff(tpr)[:, None]).ravel()
    ts = (thr[:-1, None] + u * np.diff(thr)[:, None]).ravel()
    best = np.argmin(np.abs(xs - (1 - ys)))
    return (xs[best] + 1 - ys[best]) / 2, ts[best]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_eer_matches_dense_brute_force(seed: int, ties: bool) -> None:
    labels, scores = random_scores(100 + seed, n=120, ties=ties)
    rate, threshold = metrics.eer(labels, scores)
    want_rate, want_threshold = dense_roc_eer(labels, scores)
    assert rate == pytest.approx(want_rate, abs=1e-3)
    assert threshold == pytest.approx(want_threshold, abs=1e-3)


def test_eer_interpolates_where_nearest_roc_point_is_biased() -> None:
    # real 0.1, 0.6; fake 0.4, 0.7, 0.8. ROC (FPR, TPR) by threshold: inf (0,0), .8 (0,1/3),
    # .7 (0,2/3), .6 (1/2,2/3), .4 (1/2,1), .1 (1,1). FNR is 1/3 on the segment (0,2/3)-(1/2,2/3)
    # while FPR runs 0 -> 1/2, so FPR = FNR at FPR = 1/3, t = 2/3 along it:
    # EER = 1/3, threshold = 0.7 + (2/3)(0.6 - 0.7) = 0.6333...
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.7, 0.8])
    rate, threshold = metrics.eer(labels, scores)
    assert rate == pytest.approx(1 / 3, abs=1e-12)
    assert threshold == pytest.approx(0.7 - 0.2 / 3, abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores)
    nearest = np.argmin(np.abs(fpr - (1 - tpr)))
    nearest_eer = (fpr[nearest] + 1 - tpr[nearest]) / 2
    assert nearest_eer == pytest.approx(5 / 12)  # the snapped answer is off by 1/12


def test_eer_perfect_separation_is_zero() -> None:
    rate, threshold = metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert rate == 0.0
    assert 0.2 < threshold <= 0.8


def test_eer_in_first_segment_uses_top_score_as_threshold() -> None:
    # Saturated scores: 2 of 3 fakes and 1 of 2 reals at 1.0, so the first ROC segment runs
    # (0,0) -> (1/2, 2/3). FPR = FNR where t/2 = 1 - 2t/3, t = 6/7: EER = 3/7. The +inf end is
    # clipped to the top score, so the threshold is 1.0 and still flags the saturated frames.
    rate, threshold = metrics.eer([1, 1, 0, 1, 0], [1.0, 1.0, 1.0, 0.3, 0.2])
    assert rate == pytest.approx(3 / 7, abs=1e-12)
    assert threshold == 1.0


# ---------------------------------------------------------------------------- hand example

def test_tiny_table_known_answers() -> None:
    df = scores_table(TINY)
    labels, scores = df["label"].to_numpy(), df["score"].to_numpy()
    assert metrics.roc_auc(labels, scores) == pytest.approx(TINY_FRAME_AUC)
    assert metrics.eer(labels, scores) == pytest.approx((TINY_FRAME_EER, TINY_FRAME_EER_THR))
    frame_05 = metrics.threshold_metrics(labels, scores, 0.5)
    assert {k: frame_05[k] for k in TINY_FRAME_AT_05} == pytest.approx(TINY_FRAME_AT_05)

    videos = metrics.video_scores(df, "mean")
    assert videos["score"].tolist() == pytest.approx([0.85, 0.55, 0.55, 0.2, 0.4, 0.7], abs=1e-9)
    assert metrics.roc_auc(videos["label"], videos["score"]) == pytest.approx(TINY_VIDEO_AUC)
    assert metrics.eer(videos["label"], videos["score"]) == pytest.approx((TINY_VIDEO_EER, TINY_VIDEO_EER_THR))


def test_evaluate_split_on_tiny_table() -> None:
    result = metrics.evaluate_split(scores_table(TINY), threshold=0.5, n_boot=200, seed=1)
    frame, video = result["frame"], result["video"]
    assert (frame["n"], frame["n_real"], frame["n_fake"], frame["n_videos"]) == (12, 6, 6, 6)
    assert (video["n"], video["n_real"], video["n_fake"], video["agg"]) == (6, 3, 3, "mean")
    assert frame["auc"] == pytest.approx(TINY_FRAME_AUC)
    assert video["auc"] == pytest.approx(TINY_VIDEO_AUC)
    assert (frame["eer"], frame["eer_threshold"]) == pytest.approx((TINY_FRAME_EER, TINY_FRAME_EER_THR))
    assert (video["eer"], video["eer_threshold"]) == pytest.approx((TINY_VIDEO_EER, TINY_VIDEO_EER_THR))
    assert {k: frame[k] for k in TINY_FRAME_AT_05} == pytest.approx(TINY_FRAME_AT_05)
    assert {k: video[k] for k in TINY_VIDEO_AT_05} == pytest.approx(TINY_VIDEO_AT_05)
    for level in (frame, video):
        for name in ("auc", "eer", "ap"):
            lo, hi = level[f"{name}_ci"]
            assert lo <= level[name] <= hi
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_evaluate_split_without_bootstrap() -> None:
    result = metrics.evaluate_split(scores_table(TINY), threshold=0.5, n_boot=0)
    assert result["frame"]["auc_ci"] is None and result["video"]["eer_ci"] is None


def test_per_manipulation_pits_all_reals_against_each_fake_type() -> None:
    result = metrics.per_manipulation(scores_table(TINY), threshold=0.5, n_boot=50)
    assert sorted(result) == ["Deepfakes", "Face2Face"]
    assert (result["Deepfakes"]["video"]["n_real"], result["Deepfakes"]["video"]["n_fake"]) == (3, 1)
    assert (result["Face2Face"]["frame"]["n_real"], result["Face2Face"]["frame"]["n_fake"]) == (6, 4)
    # Deepfakes video f1 (0.85) beats all reals; Face2Face videos (0.55, 0.55) beat 2 of 3 each.
    assert result["Deepfakes"]["video"]["auc"] == pytest.approx(1.0)
    assert result["Face2Face"]["video"]["auc"] == pytest.approx(4 / 6)


# ---------------------------------------------------------------------------- video aggregation

def test_video_aggregators() -> None:
    df = scores_table([("a", 0, "real", [0.1, 0.2, 0.9]), ("b", 1, "NT", [0.4, 0.5, 0.6, 0.7])])
    by = {agg: metrics.video_scores(df, agg).set_index("video")["score"] for agg in ("mean", "median", "max")}
    assert by["mean"].to_dict() == pytest.approx({"a": 0.4, "b": 0.55})
    assert by["median"].to_dict() == pytest.approx({"a": 0.2, "b": 0.55})
    assert by["max"].to_dict() == pytest.approx({"a": 0.9, "b": 0.7})
    videos = metrics.video_scores(df)
    assert list(videos.columns) == ["video", "manipulation", "label", "split", "score", "n_frames"]
    assert videos["n_frames"].tolist() == [3, 4]
    assert set(metrics.AGGREGATORS) == {"mean", "median", "max"}
    with pytest.raises(UserError, match="aggregator"):
        metrics.video_scores(df, "mode")


# ---------------------------------------------------------------------------- bootstrap

def materialised(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The resampled table itself: every frame repeated as often as its video was drawn."""
    return np.repeat(labels, weights), np.repeat(scores, weights)


def test_bootstrap_replicates_equal_explicit_resamples() -> None:
    df = synthetic_table(seed=5, n_videos=8, n_frames=4)
    df.loc[df.index[::3], "score"] = 0.5  # ties across videos and classes
    labels, scores, groups = df["label"].to_numpy(), df["score"].to_numpy(), df["video"].to_numpy()
    reps = metrics.bootstrap_replicates(labels, scores, groups, n_boot=20, seed=3)
    codes = pd.Index(reps.groups).get_indexer(groups)
    for i in (0, 7, 19):
        y, s = materialised(labels, scores, reps.frame_weights(codes, i))
        assert reps.values["auc"][i] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert reps.values["ap"][i] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert reps.values["eer"][i] == pytest.approx(metrics.eer(y, s)[0], abs=1e-12)


def test_bootstrap_keeps_class_counts_and_is_deterministic() -> None:
    df = synthetic_table(seed=6, n_videos=7, n_frames=3)
    df = df[~df["video"].isin(["real_0", "real_1"])]  # 5 real vs 7 fake videos
    args = (df["label"].to_numpy(), df["score"].to_numpy(), df["video"].to_numpy())
    reps = metrics.bootstrap_replicates(*args, n_boot=300, seed=11)
    fake = np.array([g.startswith("Deepfakes") for g in reps.groups])
    assert (reps.counts[:, ~fake].sum(axis=1) == 5).all()
    assert (reps.counts[:, fake].sum(axis=1) == 7).all()
    assert reps.counts.var(axis=0).min() > 0  # videos really are resampled
    again = metrics.bootstrap_replicates(*args, n_boot=300, seed=11)
    np.testing.assert_array_equal(reps.counts, again.counts)
    np.testing.assert_array_equal(reps.values["auc"], again.values["auc"])
    assert metrics.bootstrap_ci(*args, n_boot=300, seed=11) == metrics.bootstrap_ci(*args, n_boot=300, seed=11)
    assert metrics.bootstrap_ci(*args, n_boot=300, seed=11) != metrics.bootstrap_ci(*args, n_boot=300, seed=12)


def test_bootstrap_interval_contains_estimate_and_shrinks_with_more_videos() -> None:
    widths = {}
    for n_videos in (10, 200):
        df = synthetic_table(seed=n_videos, n_videos=n_videos, n_frames=5)
        labels, scores = df["label"].to_numpy(), df["score"].to_numpy()
        ci = metrics.bootstrap_ci(labels, scores, df["video"].to_numpy(), n_boot=500, seed=0)
        point = {"auc": metrics.roc_auc(labels, scores), "eer": metrics.eer(labels, scores)[0],
                 "ap": curve.average_precision(labels, scores), "pauc01": curve.partial_auc(labels, scores, 0.1)}
        for name, (lo, hi) in ci.items():
            assert lo <= point[name] <= hi, name
        widths[n_videos] = {name: hi - lo for name, (lo, hi) in ci.items()}
    for name in ("auc", "eer", "ap"):
        assert widths[200][name] < 0.5 * widths[10][name], name


def test_bootstrap_extra_metric_fns_get_frame_weights() -> None:
    df = synthetic_table(seed=8, n_videos=6, n_frames=3)
    args = (df["label"].to_numpy(), df["score"].to_numpy(), df["video"].to_numpy())
    ci = metrics.bootstrap_ci(*args, metric_fns={"auc_sklearn": lambda y, s, w: roc_auc_score(y, s, sample_weight=w)},
                              n_boot=100, seed=4)
    assert ci["auc_sklearn"] == pytest.approx(ci["auc"], abs=1e-12)


# ---------------------------------------------------------------------------- threshold choice

def test_choose_threshold_uses_validation_rows_only() -> None:
    val = synthetic_table(seed=1, n_videos=10, n_frames=4, split="val")
    test = synthetic_table(seed=2, n_videos=10, n_frames=4, split="test")
    both = pd.concat([val, test], ignore_index=True)
    threshold, note = metrics.choose_threshold(both)
    assert threshold == pytest.approx(metrics.eer(val["label"], val["score"])[1])
    assert "validation" in note
    flipped = both.copy()
    is_test = flipped["split"] == "test"
    flipped.loc[is_test, "label"] = 1 - flipped.loc[is_test, "label"]
    assert metrics.choose_threshold(flipped)[0] == threshold


def test_choose_threshold_without_validation_rows_falls_back_to_half() -> None:
    threshold, note = metrics.choose_threshold(scores_table(TINY, split="test"))
    assert threshold == 0.5
    assert note == "no validation rows: threshold 0.5"


def test_choose_threshold_unknown_rule() -> None:
    with pytest.raises(UserError, match="rule"):
        metrics.choose_threshold(scores_table(TINY, split="val"), rule="youden")


# ---------------------------------------------------------------------------- guards

def test_one_class_is_a_user_error() -> None:
    reals = scores_table([v for v in TINY if v[1] == 0])
    with pytest.raises(UserError, match="AUC undefined: test set has only real"):
        metrics.roc_auc(reals["label"], reals["score"])
    with pytest.raises(UserError, match="only fake"):
        metrics.eer([1, 1], [0.2, 0.3])
    with pytest.raises(UserError, match="only real"):
        metrics.evaluate_split(reals, threshold=0.5, n_boot=10)
    with pytest.raises(UserError, match="only real"):
        metrics.per_manipulation(reals, threshold=0.5)


def test_nan_scores_are_a_user_error_naming_the_count() -> None:
    df = scores_table(TINY)
    df.loc[[0, 3, 5], "score"] = np.nan
    with pytest.raises(UserError, match="3 NaN score"):
        metrics.roc_auc(df["label"], df["score"])
    with pytest.raises(UserError, match="3 NaN score"):
        metrics.evaluate_split(df, threshold=0.5, n_boot=10)
    with pytest.raises(UserError, match="3 NaN score"):
        metrics.video_scores(df)


def test_video_with_mixed_labels_is_a_user_error() -> None:
    df = scores_table(TINY)
    df.loc[df["video"] == "r2", "label"] = [0, 1]
    with pytest.raises(UserError, match="1 video.*both labels"):
        metrics.video_scores(df)
    with pytest.raises(UserError, match="both labels"):
        metrics.bootstrap_ci(df["label"], df["score"], df["video"], n_boot=10)


def test_bad_labels_are_a_user_error() -> None:
    with pytest.raises(UserError, match="not 0 .real. or 1 .fake."):
        metrics.roc_auc([0, 1, 2], [0.1, 0.2, 0.3])
