"""Saved heads: model.joblib is a plain scikit-learn Pipeline that loads without clipforensics and scores exactly
like the heads' own numpy arithmetic; runs saved as a pickle of a project class are refused with "refit"."""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import subprocess
import sys
import types

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import LinearSVC

import fit_heads
from clipforensics.core.errors import UserError
from clipforensics.data.cache import read_cache
from clipforensics.extract.prompts import class_means
from clipforensics.heads import heads as heads_module
from clipforensics.heads.heads import Features, available_heads, make_head
from clipforensics.heads.saved import load_head

PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures,Deepfakes"]

LOAD_ALONE = """
import json, sys
import joblib, numpy as np
X = np.load(sys.argv[1])
out = {}
for name in sys.argv[3:]:
    model = joblib.load(f"{sys.argv[2]}/{name}/model.joblib")
    out[name] = model.predict_proba(X)[:, 1]
np.savez(sys.argv[1] + ".npz", **out)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "clipforensics")))
"""


@pytest.fixture(scope="module")
def run_dir(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("saved") / "run"
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "all", "--out", str(out), *PROTOCOL]) == 0
    return out


def _names(tiny_cache) -> list[str]:
    return available_heads(read_cache(tiny_cache).prompts)


def test_saved_heads_load_with_scikit_learn_alone_and_give_the_written_scores(run_dir, tiny_cache, tmp_path):
    """A fresh interpreter in isolated mode (no project on its path) loads every head and reproduces scores.csv."""
    cache = read_cache(tiny_cache)
    names = _names(tiny_cache)
    scores = {n: pd.read_csv(run_dir / n / "scores.csv", keep_default_na=False) for n in names}
    row = pd.Series(range(len(cache.manifest)), index=cache.manifest.path)
    X = cache.embeddings[row.loc[scores[names[0]].path].to_numpy()].astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    done = subprocess.run([sys.executable, "-I", "-c", LOAD_ALONE, str(tmp_path / "X.npy"), str(run_dir), *names],
                          capture_output=True, text=True, cwd=tmp_path, check=True)
    assert json.loads(done.stdout) == []
    loaded = np.load(tmp_path / "X.npy.npz")
    for name in names:
        assert list(scores[name].path) == list(scores[names[0]].path)
        np.testing.assert_array_equal(loaded[name], scores[name].score.to_numpy(), err_msg=name)


def _strings_in_pickle(model) -> list[str]:
    return [str(arg) for _, arg, _ in pickletools.genops(io.BytesIO(pickle.dumps(model, protocol=4)))
            if isinstance(arg, str)]


def test_saved_file_names_no_clipforensics_module(run_dir, tiny_cache):
    for name in _names(tiny_cache):
        path = run_dir / name / "model.joblib"
        assert b"clipforensics" not in path.read_bytes(), name
        model = joblib.load(path)
        strings = _strings_in_pickle(model)
        assert strings and not [s for s in strings if "clipforensics" in s], name
        assert type(model).__module__ == "sklearn.pipeline"


def test_head_json_records_the_choices(run_dir):
    for name in ("logreg", "svm", "ridge", "real-only", "zeroshot-v2"):
        meta = json.loads((run_dir / name / "head.json").read_text())
        record = meta["estimator"]
        assert record["steps"] == [s for s, _ in joblib.load(run_dir / name / "model.joblib").steps]
        assert {k: record["choices"][k] for k in meta["params"]} == meta["params"]
        assert record["choices"]["features"] and "predict_proba" in record["format"]
        assert ("Platt" in (record["choices"]["calibration"] or "")) == (name in ("svm", "ridge"))
    assert "C" in json.loads((run_dir / "logreg" / "head.json").read_text())["estimator"]["choices"]


# The heads' arithmetic before they were saved as pipelines, written out in numpy: the saved pipelines must
# give these probabilities bit for bit (the LinearSVC seed is the one intended change). The ridge head is solved in
# float64 from sums streamed over the training rows (heads/ridge.py): it must agree with scikit-learn's own
# RidgeClassifier fitted on the same standardised rows in float64, to rounding.
def _l2(X):
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def _old_linear(model, train, val, platt, X):
    fitted = make_pipeline(FunctionTransformer(_l2), StandardScaler(), model).fit(train.X, train.y)
    if not platt:
        return fitted.predict_proba(X)[:, 1]
    calibration = LogisticRegression(C=1e6).fit(fitted.decision_function(val.X)[:, None], val.y)
    return calibration.predict_proba(fitted.decision_function(X)[:, None])[:, 1]


def _old_real_only(train, X):
    scaler = StandardScaler().fit(_l2(train.X[train.y == 0]))
    real = scaler.transform(_l2(train.X[train.y == 0]))
    cov = LedoitWolf().fit(real)
    logd = np.log(np.sqrt(np.maximum(cov.mahalanobis(real), 1e-12)))
    mu, sigma = float(logd.mean()), float(logd.std() + 1e-12)
    d = np.sqrt(np.maximum(cov.mahalanobis(scaler.transform(_l2(X))), 1e-12))
    return _sigmoid((np.log(d) - mu) / sigma)


def _old_probability(name, params, prompts, train, val, X):
    if name == "logreg":
        return _old_linear(LogisticRegression(C=params["C"], class_weight="balanced", max_iter=2000), train, val,
                           False, X)
    if name == "svm":
        return _old_linear(LinearSVC(C=params["C"], class_weight="balanced", max_iter=5000, random_state=0), train,
                           val, True, X)
    if name == "ridge":
        in_float64 = make_pipeline(FunctionTransformer(np.asarray, kw_args={"dtype": np.float64}),
                                   RidgeClassifier(alpha=params["alpha"], class_weight="balanced"))
        return _old_linear(in_float64, train, val, True, X)
    if name == "prompt-features":
        P = _l2(prompts["bank"].embeddings)
        model = make_pipeline(FunctionTransformer(lambda A: _l2(A) @ P.T), StandardScaler(),
                              LogisticRegression(C=params["C"], class_weight="balanced", max_iter=2000))
        return model.fit(train.X, train.y).predict_proba(X)[:, 1]
    if name == "real-only":
        return _old_real_only(train, X)
    means = class_means(prompts["v2"].embeddings, prompts["v2"].labels)
    cos = _l2(X) @ means.T
    return _sigmoid(100.0 * (cos[:, 1] - cos[:, 0]))


@pytest.mark.parametrize("name", ["logreg", "svm", "ridge", "prompt-features", "real-only", "zeroshot-v2"])
def test_pipelines_give_the_previous_heads_probabilities_bit_for_bit(tiny_cache, tmp_path, name):
    cache = read_cache(tiny_cache)
    X = cache.embeddings.astype(np.float32)
    y, video = cache.manifest.label.to_numpy(), cache.manifest.video.to_numpy()
    idx = np.random.default_rng(1).permutation(len(y))
    tr, va = idx[: len(y) // 2], idx[len(y) // 2: 3 * len(y) // 4]
    train, val = Features(X[tr], y[tr], video[tr]), Features(X[va], y[va], video[va])
    head = make_head(name, cache.prompts).fit(train, val)
    expected = _old_probability(name, head.params, cache.prompts, train, val, X)
    if name == "ridge":
        np.testing.assert_allclose(head.predict_proba(X), expected, rtol=1e-9, atol=0)
        expected = head.predict_proba(X)
    np.testing.assert_array_equal(head.predict_proba(X), expected)
    joblib.dump(head.model, tmp_path / "model.joblib")
    np.testing.assert_array_equal(load_head(tmp_path / "model.joblib").predict_proba(X), expected)


def _refusal(path) -> str:
    with pytest.raises(UserError) as err:
        load_head(path)
    message = str(err.value)
    assert len(message.splitlines()) == 1
    return message


def test_runs_saved_in_the_previous_format_are_refused_with_refit(tiny_cache, tmp_path, monkeypatch):
    """The previous format pickled the head object itself; loading one, or one whose class has moved since, is
    refused by name with what to do."""
    cache = read_cache(tiny_cache)
    X, y, video = cache.embeddings.astype(np.float32), cache.manifest.label.to_numpy(), cache.manifest.video.to_numpy()
    idx = np.random.default_rng(2).permutation(len(y))
    train, val = (Features(X[i], y[i], video[i]) for i in (idx[: len(y) // 2], idx[len(y) // 2:]))
    joblib.dump(make_head("logreg", cache.prompts).fit(train, val), tmp_path / "old.joblib")  # the old save_head
    message = _refusal(tmp_path / "old.joblib")
    assert "previous format" in message and "fit_heads.py" in message

    moved = types.new_class("MovedHead", (heads_module.Head,))
    moved.__module__, moved.__qualname__ = heads_module.__name__, "MovedHead"
    monkeypatch.setattr(heads_module, "MovedHead", moved, raising=False)
    joblib.dump(moved(), tmp_path / "moved.joblib")
    monkeypatch.delattr(heads_module, "MovedHead")
    message = _refusal(tmp_path / "moved.joblib")
    assert "previous format" in message and "fit_heads.py" in message

    joblib.dump(LogisticRegression(), tmp_path / "bare.joblib")
    assert "fit_heads.py" in _refusal(tmp_path / "bare.joblib")
