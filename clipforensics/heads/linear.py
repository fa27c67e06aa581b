"""The linear heads' fits from training rows read a block at a time: the rows are never held as read.

All three (logistic regression, the SVM, ridge) see the same features: each row divided by its L2 norm, then
standardised with statistics of the training rows. The standardiser is fitted as blocks pass
(StandardScaler.partial_fit: on a split of one block, exactly `fit`), then:

- logistic regression and the SVM fit scikit-learn's own estimator on the standardised rows, built a block at a
  time and held once for the whole grid (in float64 for liblinear, which would otherwise copy them to float64);
- ridge is solved from sums. scikit-learn's RidgeClassifier(class_weight="balanced") on standardised rows z,
  labels t = -1 (real) or +1 (fake) and balanced weights s minimises sum s (t - z.w - b)^2 + alpha |w|^2, whose
  solution is (Zc' S Zc + alpha I) w = Zc' S (t - t_bar), b = t_bar - z_bar.w, with Zc the rows centred on their
  weighted mean z_bar. Those sums are gathered in float64 as blocks pass, and one pass serves every alpha; what
  is saved is scikit-learn's RidgeClassifier holding the solution in `coef_` and `intercept_`.

Every fitted head is a plain Pipeline of scikit-learn steps, saved and scored like any other.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
from scipy import linalg
from sklearn.linear_model import RidgeClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer, StandardScaler
from sklearn.utils.class_weight import compute_class_weight

from clipforensics.heads.components import CLASSES, l2_rows
from clipforensics.heads.rows import Features


def fitted_preprocessing(train: Features) -> Pipeline:
    """L2 rows, then the standardiser fitted on them a block at a time."""
    steps = Pipeline([("l2", l2_rows()), ("standardise", StandardScaler())])
    for at, X in train.blocks():
        if at.start == 0:
            steps[0].fit(X)  # records the width only: every l2 step is stateless
        steps[1].partial_fit(steps[0].transform(X))
    return steps


def standardised(steps: Pipeline, train: Features, dtype: Any) -> np.ndarray:
    """The training rows through the fitted steps, filled in a block at a time into one array of `dtype`."""
    out = np.empty((len(train.y), steps[1].n_features_in_), dtype=dtype)
    for at, X in train.blocks():
        out[at] = steps.transform(X)
    return out


def grid_fits(train: Features, grid: tuple[float, ...], classifier: Callable[[float], Any],
              dtype: Any) -> Iterator[tuple[float, Pipeline]]:
    """Each grid value with its pipeline: the standardised rows made once, the classifier fitted on them."""
    steps = fitted_preprocessing(train)
    Z = standardised(steps, train, dtype)
    for value in grid:
        yield value, Pipeline([*steps.steps, ("classifier", classifier(value).fit(Z, train.y))])


class NormalEquations:
    """Weighted sums of standardised rows and labels, added to block by block."""

    def __init__(self, dim: int) -> None:
        self.gram, self.z_sum, self.zt_sum = np.zeros((dim, dim)), np.zeros(dim), np.zeros(dim)
        self.weight, self.t_sum = 0.0, 0.0

    def add(self, Z: np.ndarray, t: np.ndarray, s: np.ndarray) -> None:
        Z = Z.astype(np.float64)
        weighted = Z * s[:, None]
        self.gram += weighted.T @ Z
        self.z_sum += weighted.sum(axis=0)
        self.zt_sum += weighted.T @ t
        self.weight += float(s.sum())
        self.t_sum += float(s @ t)

    def solve(self, alpha: float) -> tuple[np.ndarray, float]:
        """(w, b) for one alpha: the centred system, solved by Cholesky as scikit-learn's 'cholesky' solver does."""
        z_bar, t_bar = self.z_sum / self.weight, self.t_sum / self.weight
        centred = self.gram - self.weight * np.outer(z_bar, z_bar)
        centred.flat[::len(z_bar) + 1] += alpha
        w = linalg.solve(centred, self.zt_sum - self.weight * z_bar * t_bar, assume_a="pos")
        return w, float(t_bar - z_bar @ w)


def ridge_classifier(alpha: float, w: np.ndarray, b: float) -> RidgeClassifier:
    """scikit-learn's RidgeClassifier as its binary fit would leave it, holding the solution (P(fake) = class 1)."""
    clf = RidgeClassifier(alpha=alpha, class_weight="balanced")
    clf._label_binarizer = LabelBinarizer(pos_label=1, neg_label=-1).fit(np.array(CLASSES))
    clf.classes_ = clf._label_binarizer.classes_
    clf.coef_, clf.intercept_ = w, np.array([b])  # a binary fit's shapes: (features,) and (1,)
    clf.n_features_in_, clf.n_iter_, clf.solver_ = len(w), None, "cholesky"
    return clf


def ridge_fits(train: Features, grid: tuple[float, ...]) -> Iterator[tuple[float, Pipeline]]:
    """Each alpha of the grid with its fitted pipeline: two passes over the training rows for all of them."""
    steps = fitted_preprocessing(train)
    weights = compute_class_weight("balanced", classes=np.array(CLASSES), y=train.y)
    sums = NormalEquations(steps[1].n_features_in_)
    for at, X in train.blocks():
        y = train.y[at]
        sums.add(steps.transform(X), np.where(y == CLASSES[1], 1.0, -1.0), weights[y])
    for alpha in grid:
        yield alpha, Pipeline([*steps.steps, ("classifier", ridge_classifier(alpha, *sums.solve(alpha)))])
