"""The metric registry: the partial AUC against scikit-learn (plain, weighted, per bootstrap resample), a
metric registered in a test reaching the level report and its interval, and the partial AUC in robustness rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import evaluate
import fit_heads
from clipforensics.data.scores import read_scores
from clipforensics.measure import curve, metrics, specs
from clipforensics.report import tables
from test_robustness import PROTOCOL, synthetic_cache

MAX_FPR = 0.1


def labelled(seed: int, n: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes; `ties` rounds scores to one decimal so many coincide, across classes too."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.normal(size=n) + 1.0 * labels
    return labels, np.round(scores, 1) if ties else scores


def grouped(seed: int, n_videos: int = 12, n_frames: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames of videos with a per-video effect, scores rounded so ties cross videos and classes."""
    rng = np.random.default_rng(seed)
    labels, scores, videos = [], [], []
    for v in range(2 * n_videos):
        label = v % 2
        effect = rng.normal(1.2 * label, 1.0)
        labels += [label] * n_frames
        scores += list(np.round(effect + rng.normal(0, 0.8, n_frames), 1))
        videos += [f"v{v}"] * n_frames
    return np.array(labels), np.array(scores), np.array(videos)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_partial_auc_matches_sklearn_max_fpr(seed: int, ties: bool) -> None:
    labels, scores = labelled(seed, 40 + 37 * seed, ties)
    expected = roc_auc_score(labels, scores, max_fpr=MAX_FPR)
    assert curve.partial_auc(labels, scores, MAX_FPR) == pytest.approx(expected, abs=1e-12)
    assert specs.METRICS.get("pauc01").point(labels, scores, None) == pytest.approx(expected, abs=1e-12)
    assert curve.partial_auc(labels, scores, 0.37) == pytest.approx(roc_auc_score(labels, scores, max_fpr=0.37),
                                                                     abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_weighted_partial_auc_matches_sklearn_sample_weight(seed: int) -> None:
    labels, scores = labelled(seed, 120, ties=True)
    weights = np.random.default_rng(100 + seed).integers(0, 4, labels.size).astype(float)
    weights[:2] = 1
    expected = roc_auc_score(labels, scores, max_fpr=MAX_FPR, sample_weight=weights)
    assert curve.partial_auc(labels, scores, MAX_FPR, weights) == pytest.approx(expected, abs=1e-12)


def test_partial_auc_edge_values() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert curve.partial_auc(labels, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], MAX_FPR) == pytest.approx(1.0)
    assert curve.partial_auc(labels, np.full(6, 0.5), MAX_FPR) == pytest.approx(0.5)  # all tied: chance
    with pytest.raises(Exception, match="max_fpr"):
        curve.partial_auc(labels, np.arange(6), 1.5)


def test_bootstrap_partial_auc_equals_sklearn_on_every_resample() -> None:
    labels, scores, videos = grouped(seed=3)
    reps = metrics.bootstrap_replicates(labels, scores, videos, n_boot=60, seed=5)
    codes = pd.Index(reps.groups).get_indexer(videos)
    expected = [roc_auc_score(labels, scores, max_fpr=MAX_FPR, sample_weight=reps.frame_weights(codes, i))
                for i in range(60)]
    np.testing.assert_allclose(reps.values["pauc01"], expected, rtol=0, atol=1e-12)
    lo, hi = metrics.bootstrap_ci(labels, scores, videos, n_boot=60, seed=5)["pauc01"]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(expected, [0.025, 0.975])), abs=1e-12)


def test_level_report_carries_partial_auc_at_both_levels() -> None:
    labels, scores, videos = grouped(seed=4)
    df = pd.DataFrame({"path": [f"{v}/{i}" for i, v in enumerate(videos)], "video": videos, "label": labels,
                       "manipulation": np.where(labels == 1, "Deepfakes", "real"), "split": "test", "score": scores})
    result = metrics.evaluate_split(df, threshold=0.5, n_boot=200)
    means = df.groupby("video").agg(label=("label", "first"), score=("score", "mean"))
    assert result["frame"]["pauc01"] == pytest.approx(roc_auc_score(labels, scores, max_fpr=MAX_FPR), abs=1e-12)
    assert result["video"]["pauc01"] == pytest.approx(roc_auc_score(means.label, means.score, max_fpr=MAX_FPR),
                                                      abs=1e-12)
    for level in ("frame", "video"):
        lo, hi = result[level]["pauc01_ci"]
        assert lo <= result[level]["pauc01"] <= hi


def mean_fake_score(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None) -> float:
    w = (labels == 1) * (1.0 if weights is None else weights)
    return float(np.average(scores, weights=w))


def test_a_registered_metric_reaches_report_interval_and_table(monkeypatch) -> None:
    """One registration, no curve reducer: the point, a per-resample interval and a table column follow."""
    spec = specs.MetricSpec("mean_fake", "mean fake score", mean_fake_score, table_levels=("video",), table_ci=True)
    monkeypatch.setitem(specs.METRICS, "mean_fake", spec)
    labels, scores, videos = grouped(seed=6)
    df = pd.DataFrame({"path": [f"{v}/{i}" for i, v in enumerate(videos)], "video": videos, "label": labels,
                       "manipulation": np.where(labels == 1, "Deepfakes", "real"), "split": "test", "score": scores})
    result = metrics.evaluate_split(df, threshold=0.5, n_boot=150, seed=2)
    assert result["frame"]["mean_fake"] == pytest.approx(scores[labels == 1].mean())
    expected = metrics.bootstrap_ci(labels, scores, videos, metric_fns={"x": mean_fake_score}, n_boot=150, seed=2)
    assert result["frame"]["mean_fake_ci"] == list(expected["x"])
    assert "video mean fake score [95% CI]" in tables.result_columns()
    assert "frame mean fake score [95% CI]" not in tables.result_columns()


def test_robustness_rows_carry_the_partial_auc(tmp_path) -> None:
    cache = synthetic_cache(tmp_path / "c.h5", copies=True, layers=2)
    assert fit_heads.main(["--cache", str(cache), "--heads", "logreg", "--out", str(tmp_path / "run"), *PROTOCOL]) == 0
    out = tmp_path / "report"
    assert evaluate.main(["robustness", str(tmp_path / "run"), "--out", str(out), "--bootstrap", "100"]) == 0
    rows = {r["copy"]: r for r in json.loads((out / "robustness.json").read_text())["robustness"]}
    clean = read_scores(tmp_path / "run" / "logreg" / "scores.csv")
    test = clean[clean.split == "test"]
    videos = test.groupby("video").agg(label=("label", "first"), score=("score", "mean"))
    assert rows["clean"]["frame_pauc01"] == pytest.approx(roc_auc_score(test.label, test.score, max_fpr=MAX_FPR))
    assert rows["clean"]["video_pauc01"] == pytest.approx(roc_auc_score(videos.label, videos.score, max_fpr=MAX_FPR))
    lo, hi = rows["clean"]["video_pauc01_ci"]
    assert lo <= rows["clean"]["video_pauc01"] <= hi
    flat = pd.read_csv(out / "robustness.csv")
    assert json.loads(flat.loc[flat["copy"] == "clean", "frame_pauc01_ci"].iloc[0]) == rows["clean"]["frame_pauc01_ci"]
    assert "frame pAUC@0.1 [95% CI]" in (out / "robustness.md").read_text()
