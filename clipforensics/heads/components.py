"""Scikit-learn steps that redo the heads' numpy arithmetic bit for bit, so a fitted head is a plain Pipeline.

A saved head (heads/saved.py) must load with scikit-learn alone, so every step here is a stock scikit-learn
estimator or a FunctionTransformer around a numpy function: no pickle names this package. Where scikit-learn's
own component rounds differently from the numpy the heads have always used (Normalizer sums squares with
einsum, LogisticRegression's probability is scipy's expit), the numpy is spelled out step by step instead, so
every score stays identical to the arithmetic it replaces.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer, LabelBinarizer, Normalizer, StandardScaler

CLASSES = (0, 1)  # real, fake: the saved classifier's classes_, so P(fake) is predict_proba's column 1
FAKE_COLUMN = 1
LOGIT_CLIP = 60.0  # the logistic's input is clipped here (exp overflows far beyond; probabilities are 0 or 1)
DISTANCE_FLOOR = 1e-12


def l2_rows() -> Pipeline:
    """Each row divided by its L2 norm as np.linalg.norm computes it (Normalizer's einsum norm rounds otherwise).

    The norm is appended as a last column; dividing a row by its largest absolute value then divides by that
    norm (no coordinate exceeds it), and the column is dropped. All-zero rows stay zero.
    """
    with_norm = FeatureUnion([("embedding", "passthrough"),
                              ("norm", FunctionTransformer(np.linalg.norm, kw_args={"axis": 1, "keepdims": True}))])
    return Pipeline([("with_norm", with_norm), ("divide", Normalizer(norm="max")),
                     ("drop_norm", FunctionTransformer(np.delete, kw_args={"obj": -1, "axis": 1}))])


def l2_normalise(X: np.ndarray) -> np.ndarray:
    """Unit rows (the numpy form of l2_rows, for prompt matrices fixed at fit time)."""
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def fixed_linear(matrix: np.ndarray) -> FunctionTransformer:
    """X @ matrix with a matrix chosen at fit time (prompt cosines, a difference of columns, a temperature)."""
    return FunctionTransformer(np.dot, kw_args={"b": np.asarray(matrix)})


def column() -> FunctionTransformer:
    """A 1-d score vector as one column, the shape the next scikit-learn step expects."""
    return FunctionTransformer(np.reshape, kw_args={"shape": (-1, 1)})


def fixed_standardise(mean: float, scale: float) -> StandardScaler:
    """(x - mean) / scale on one column with values the head computed itself (a refit would round otherwise)."""
    scaler = StandardScaler().fit(np.zeros((1, 1)))
    scaler.mean_, scaler.scale_ = np.array([mean]), np.array([scale])
    return scaler


def distance_steps(mahalanobis: Callable[[np.ndarray], np.ndarray]) -> list[tuple[str, FunctionTransformer]]:
    """sqrt(max(squared distance, 1e-12)), then its log, from a fitted covariance's `mahalanobis` method."""
    return [("mahalanobis", FunctionTransformer(mahalanobis)), ("column", column()),
            ("floor", FunctionTransformer(np.clip, kw_args={"a_min": DISTANCE_FLOOR, "a_max": None})),
            ("distance", FunctionTransformer(np.sqrt)), ("log", FunctionTransformer(np.log))]


def logistic_steps() -> list[tuple[str, FunctionTransformer]]:
    """1 / (1 + exp(-clip(z, -60, 60))) in numpy ufuncs: the heads' logistic, which scipy's expit is not bitwise."""
    return [("clip", FunctionTransformer(np.clip, kw_args={"a_min": -LOGIT_CLIP, "a_max": LOGIT_CLIP})),
            ("negate", FunctionTransformer(np.negative)), ("exp", FunctionTransformer(np.exp)),
            ("one_plus", FunctionTransformer(partial(np.add, 1.0))), ("invert", FunctionTransformer(np.reciprocal))]


def probability_passthrough() -> MLPClassifier:
    """A classifier whose predict_proba is its one input column as P(fake), unchanged.

    The probability is already computed by the steps before it; an MLPClassifier with no hidden layer, weight 1,
    bias 0 and an identity output is the stock classifier that hands it on exactly (a LogisticRegression would
    apply scipy's expit again).
    """
    clf = MLPClassifier(hidden_layer_sizes=(), activation="identity")
    clf.coefs_, clf.intercepts_ = [np.ones((1, 1))], [np.zeros(1)]
    clf.n_layers_, clf.n_outputs_, clf.out_activation_, clf.n_features_in_ = 2, 1, "identity", 1
    clf.classes_ = np.array(CLASSES)
    clf._label_binarizer = LabelBinarizer().fit(CLASSES)  # what MLPClassifier.predict maps 0/1 outputs back with
    return clf


def fake_probability(model: Pipeline, X: np.ndarray) -> np.ndarray:
    """P(fake) of each row from a saved head's pipeline (its classes_ are CLASSES)."""
    return model.predict_proba(X)[:, FAKE_COLUMN]
