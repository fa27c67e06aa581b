"""The linear heads fit from training rows read a block at a time (heads/linear.py, issue 24): ridge is solved from
streamed sums and must be scikit-learn's RidgeClassifier fit; logistic regression and the SVM fit scikit-learn's
own estimators on rows standardised a block at a time, and must be the whole pipeline's fit. None holds more than
a block of the rows as read, and each saves a plain Pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from clipforensics.heads import rows as rows_mod
from clipforensics.heads.heads import make_head
from clipforensics.heads.rows import Features

BLOCK = 300


class Recorded:
    """An in-memory row source that logs how many rows each read asks for."""

    def __init__(self, X: np.ndarray) -> None:
        self.X, self.sizes = X, []

    def read(self, idx, dtype=None):
        self.sizes.append(len(idx))
        return self.X[idx].astype(dtype or self.X.dtype)


def _data(n: int, seed: int, dim: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Float16 rows with a large shared component (as CLIP embeddings have) and 30 % fakes: unbalanced classes."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    X = 3.0 + rng.normal(size=(n, dim)) + 0.4 * y[:, None] * rng.normal(size=dim)
    return X.astype(np.float16), y


def _l2(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(rows_mod, "BLOCK", BLOCK)


def test_each_alpha_is_scikit_learns_ridge_on_the_standardised_rows(small_blocks):
    X, y = _data(2500, 0)
    source = Recorded(X)
    train = Features.stored(source, np.arange(len(y))[::-1][:2345], y[::-1][:2345], np.zeros(2345))
    head = make_head("ridge", {})
    fits = dict(head.candidates(train))
    assert list(fits) == list(head.grid)
    assert max(source.sizes) == BLOCK and sum(source.sizes) == 2 * 2345  # two passes, never the whole split

    rows = X[::-1][:2345].astype(np.float32)
    scaler = StandardScaler().fit(_l2(rows))
    Z = scaler.transform(_l2(rows)).astype(np.float64)
    held_out = _data(400, 1)[0].astype(np.float32)
    for alpha, model in fits.items():
        assert type(model) is Pipeline and type(model[-1]) is RidgeClassifier and model[-1].alpha == alpha
        reference = RidgeClassifier(alpha=alpha, class_weight="balanced").fit(Z, train.y)
        np.testing.assert_allclose(model[-1].coef_, reference.coef_, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(model[-1].intercept_, reference.intercept_, rtol=1e-8)
        expected = reference.decision_function(scaler.transform(_l2(held_out)).astype(np.float64))
        np.testing.assert_allclose(model.decision_function(held_out), expected, rtol=1e-7, atol=1e-9)
        np.testing.assert_array_equal(model.predict(held_out), reference.predict(
            scaler.transform(_l2(held_out)).astype(np.float64)))


@pytest.mark.parametrize("name", ["logreg", "svm"])
def test_logreg_and_svm_are_the_whole_pipelines_fit(small_blocks, name):
    """Only the standardiser's statistics are gathered block by block (partial_fit): the same fit to rounding."""
    X, y = _data(2345, 4)
    source = Recorded(X)
    head = make_head(name, {})
    fits = dict(head.candidates(Features.stored(source, np.arange(len(y)), y, np.zeros(len(y)))))
    assert max(source.sizes) == BLOCK and sum(source.sizes) == 2 * len(y)
    rows, held_out = X.astype(np.float32), _data(400, 5)[0].astype(np.float32)
    for value, model in fits.items():
        assert type(model) is Pipeline and type(model[-1]) is type(head.classifier(value))
        whole = head.estimator(value).fit(rows, y)
        np.testing.assert_allclose(model.decision_function(held_out), whole.decision_function(held_out),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model[1].mean_, whole[1].mean_, rtol=1e-12)


def test_streamed_and_held_rows_give_the_same_head(small_blocks):
    """Rows already held (another head read them) are cut into the same blocks: the same sums, the same model."""
    X, y = _data(1000, 2)
    video = np.repeat(np.arange(100), 10)
    y = np.repeat(y[::10], 10)  # one label per video
    val_X, val_y = _data(400, 3)
    val = Features(val_X.astype(np.float32), np.repeat(val_y[::10], 10), np.repeat(np.arange(40), 10))
    streamed = make_head("ridge", {}).fit(Features.stored(X, np.arange(1000), y, video), val)
    held = make_head("ridge", {}).fit(Features(X.astype(np.float32), y, video), val)
    assert streamed.params == held.params
    np.testing.assert_array_equal(streamed.predict_proba(val.X), held.predict_proba(val.X))
