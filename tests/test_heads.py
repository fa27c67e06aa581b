"""Heads and fit_heads.py: every head fits and scores; selection never sees test; real signal is learned."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import extract_features
import fit_heads
from clipforensics.data.cache import read_cache
from clipforensics.heads.heads import HEADS, Features, ZeroShotHead, available_heads, make_head
from clipforensics.measure.metrics import roc_auc
from clipforensics.synthetic.write import generate
from conftest import TINY

PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures,Deepfakes"]


@pytest.fixture(scope="module")
def run_dir(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "all", "--out", str(out), *PROTOCOL]) == 0
    return out


def test_every_head_fits_and_scores(run_dir, tiny_cache):
    cache = read_cache(tiny_cache)
    names = available_heads(cache.prompts)
    assert set(HEADS) | {"zeroshot-v1", "zeroshot-v2", "zeroshot-bank"} == set(names)
    for name in names:
        scores = pd.read_csv(run_dir / name / "scores.csv", keep_default_na=False)
        assert list(scores.columns) == ["path", "video", "manipulation", "label", "split", "score"]
        assert set(scores.split) == {"val", "test"}
        assert scores.score.between(0, 1).all() and scores.score.nunique() > 1
        meta = json.loads((run_dir / name / "head.json").read_text())
        assert meta["cache_identity"]["model"] == "tiny-vit" and np.isfinite(meta["val_video_auc"])
        assert (run_dir / name / "model.joblib").stat().st_size > 0


def test_hyperparameters_never_depend_on_test_rows(tiny_cache):
    """Selection uses train and val only: scrambling test labels changes nothing the head learns."""
    cache = read_cache(tiny_cache)
    rng = np.random.default_rng(0)
    X = cache.embeddings.astype(np.float32)
    y = cache.manifest.label.to_numpy()
    video = cache.manifest.video.to_numpy()
    idx = rng.permutation(len(y))
    tr, va = idx[: len(y) // 2], idx[len(y) // 2: 3 * len(y) // 4]
    train, val = Features(X[tr], y[tr], video[tr]), Features(X[va], y[va], video[va])
    a = make_head("logreg", cache.prompts).fit(train, val)
    b = make_head("logreg", cache.prompts).fit(train, val)
    assert a.params == b.params
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_zeroshot_classes_come_from_labels_not_order(tiny_cache):
    cache = read_cache(tiny_cache)
    p = cache.prompts["v2"]
    swapped = type(p)(p.texts[::-1], p.embeddings[::-1].copy(), p.labels[::-1].copy())
    X = cache.embeddings.astype(np.float32)
    np.testing.assert_allclose(ZeroShotHead("v2", p).predict_proba(X), ZeroShotHead("v2", swapped).predict_proba(X))
    relabelled = type(p)(p.texts, p.embeddings, 1 - p.labels)
    np.testing.assert_allclose(ZeroShotHead("v2", relabelled).predict_proba(X),
                               1 - ZeroShotHead("v2", p).predict_proba(X), atol=1e-6)


def test_platt_scaled_heads_are_monotone_in_the_decision(run_dir):
    import joblib

    model = joblib.load(run_dir / "svm" / "model.joblib")  # features, then stacking: SVM decision -> Platt
    X = np.random.default_rng(0).normal(size=(50, 128)).astype(np.float32)
    order = np.argsort(model[-1].transform(model[:-1].transform(X))[:, 0])
    steps = np.diff(model.predict_proba(X)[order, 1])
    assert np.all(steps >= -1e-12) or np.all(steps <= 1e-12), "Platt scaling keeps the ranking (or reverses it)"


def test_unknown_head_and_mixed_run_folder_are_refused(tiny_cache, run_dir, tmp_path, capsys):
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown head 'nope'" in capsys.readouterr().err
    other = tmp_path / "other.h5"
    cache = read_cache(tiny_cache)
    root = cache.attrs["data_root"]
    assert extract_features.main(["--data-root", root, "--out", str(other), *TINY, "--init-seed", "3"]) == 0
    assert fit_heads.main(["--cache", str(other), "--heads", "logreg", "--out", str(run_dir), *PROTOCOL]) == 2
    assert "another cache" in capsys.readouterr().err


def test_list_heads(tiny_cache, capsys):
    assert fit_heads.main(["--cache", str(tiny_cache), "--list-heads"]) == 0
    assert "zeroshot-bank" in capsys.readouterr().out.split()


def _in_domain_auc(tmp_path, strength: float) -> float:
    root = generate(tmp_path / f"s{strength}", videos=60, frames=4, size=64, strength=strength, seed=1,
                    manipulations=("FaceSwap", "NeuralTextures"))
    cache = tmp_path / f"s{strength}.h5"
    assert extract_features.main(["--data-root", str(root), "--out", str(cache), *TINY, "--precision", "fp32"]) == 0
    out = tmp_path / f"run{strength}"
    assert fit_heads.main(["--cache", str(cache), "--heads", "ridge", "--out", str(out),
                           "--train-fakes", "FaceSwap", "--test-fakes", "FaceSwap", "--real-split", "50/10/40"]) == 0
    scores = pd.read_csv(out / "ridge" / "scores.csv")
    test = scores[scores.split == "test"]
    return roc_auc(test.label, test.score)


@pytest.mark.slow
def test_a_strong_artifact_is_learned_and_no_artifact_is_not(tmp_path):
    """Same pipeline, same videos: only the artifact differs, so the AUC gap is the learned signal."""
    strong, none = _in_domain_auc(tmp_path, 3.0), _in_domain_auc(tmp_path, 0.0)
    assert strong > 0.7 and none < 0.65 and strong - none > 0.15, (strong, none)


def test_a_run_of_another_protocol_is_refused_naming_every_differing_field_before_any_output(run_dir, tiny_cache,
                                                                                               capsys):
    before = (run_dir / "run.json").read_text()
    other = ["--train-fakes", "Deepfakes", "--test-fakes", "FaceSwap", "--real-split", "60/20/20", "--split-seed", "3",
             "--frames-per-video", "2"]
    capsys.readouterr()
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "logreg", "--out", str(run_dir), *other]) == 2
    captured = capsys.readouterr()
    (error,) = captured.err.splitlines()  # refused before the splits or anything else is printed
    assert captured.out == "" and "another cache or protocol" in error
    for field, old, new in (("frames_per_video", None, 2), ("real_split", "70/10/20", "60/20/20"),
                            ("split_seed", 0, 3), ("test_fakes", ["NeuralTextures", "Deepfakes"], ["FaceSwap"]),
                            ("train_fakes", ["FaceSwap"], ["Deepfakes"])):
        assert f"protocol.{field}: {old!r} != {new!r}" in error
    assert "; splits: '" in error and error.endswith("rerun with --overwrite to replace it")
    assert (run_dir / "run.json").read_text() == before


# ---------------------------------------------------------------- selection on what is reported (issue 22, item 4)

def _noisy_features(seed: int, n_videos: int = 24, frames: int = 5, dim: int = 48) -> Features:
    """Videos whose frames disagree (some frames confidently wrong): the video mean of decision values and the
    video mean of probabilities then rank videos differently."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_videos) % 2, frames)
    X = rng.normal(size=(len(y), dim)).astype(np.float32)
    X[:, 0] += 0.8 * y + rng.standard_t(1.5, size=len(y)) * 0.6
    return Features(X, y, np.repeat([f"v{i}" for i in range(n_videos)], frames))


@pytest.mark.parametrize("name, seed", [("logreg", 4), ("svm", 0), ("ridge", 0)])
def test_grid_heads_choose_on_the_video_mean_of_their_probabilities(name, seed):
    """An independent selection over the grid on the reported probabilities picks the same value and AUC (data
    where choosing on decision values picks another value or reports another AUC)."""
    from clipforensics.heads.heads import platt_scaled, video_auc

    train, val = _noisy_features(seed), _noisy_features(seed + 1)
    head = make_head(name, {}).fit(train, val)
    reported, decided = {}, {}
    for value in head.grid:
        model = head.estimator(value).fit(train.X, train.y)
        decided[value] = video_auc(val, model.decision_function(val.X))
        model = platt_scaled(model, val) if head.calibration else model
        reported[value] = video_auc(val, model.predict_proba(val.X)[:, 1])
    best = max(head.grid, key=lambda v: (reported[v], -head.grid.index(v)))
    assert head.params[head.param] == best and head.val_auc == reported[best]
    on_decisions = max(head.grid, key=lambda v: (decided[v], -head.grid.index(v)))
    assert (on_decisions, decided[on_decisions]) != (best, reported[best]), "the data must tell the rules apart"


def test_svm_fits_are_identical_whatever_numpy_global_state():
    """LinearSVC's dual solver (frames < dimensions here) is seeded: two fits give identical scores."""
    train, val = _noisy_features(2, n_videos=6, frames=3, dim=64), _noisy_features(3, n_videos=6, frames=3, dim=64)
    assert len(train.y) < train.X.shape[1]
    np.random.seed(1)
    first = make_head("svm", {}).fit(train, val).predict_proba(val.X)
    np.random.seed(2)
    np.random.random(1000)
    second = make_head("svm", {}).fit(train, val).predict_proba(val.X)
    np.testing.assert_array_equal(first, second)
