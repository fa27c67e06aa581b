"""Calibrated probabilities of fake from a run's raw scores, fitted on the run's own validation frames.

A head's or a LoRA run's score is a number in [0, 1] but no probability: trained on one manipulation and
chosen for ranking, 0.62 need not mean "62 % of such inputs are fake". `--calibrate` fits scikit-learn's
Platt scaling (a logistic regression on the score) or isotonic regression on the validation rows of the run's
scores.csv, the rows the decision threshold comes from (never the test rows), records what it fitted
(method, parameters, number of rows) and maps each input's score through it. Without it, scores are raw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.data.scores import read_scores
from clipforensics.measure.metrics import VAL_SPLIT

RAW_NOTE = "raw scores are uncalibrated: a score is no probability of fake (--calibrate platt|isotonic fits one)"


@dataclass(frozen=True)
class Calibration:
    """A fitted map from raw score to probability of fake, and the record of how it was fitted."""

    method: str
    parameters: dict[str, Any]
    n_val: int
    n_val_fake: int
    source: str
    predict: Callable[[np.ndarray], np.ndarray]

    def __call__(self, scores: np.ndarray | float) -> np.ndarray:
        """Calibrated probabilities of fake for raw scores."""
        return self.predict(np.asarray(scores, dtype=float).reshape(-1))

    def record(self) -> dict[str, Any]:
        """What detections.json keeps: enough to redo the map without the run."""
        return {"method": self.method, "parameters": self.parameters, "n_val_rows": self.n_val,
                "n_val_fake": self.n_val_fake, "fitted_on": f"validation frames of {self.source}",
                "applied_to": "each input's score (its frames' aggregate) and each frame's score"}

    def describe(self) -> str:
        """One line for the terminal and the sheet."""
        return (f"calibrated with {self.method} on {self.n_val} validation frames of the run "
                f"({self.n_val_fake} fake): P(fake) is read from it, the raw score stays uncalibrated")


def _platt(scores: np.ndarray, labels: np.ndarray) -> tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    """Platt scaling: P(fake) = 1 / (1 + exp(-(a * score + b))), a and b by unpenalised maximum likelihood."""
    model = LogisticRegression(C=np.inf).fit(scores[:, None], labels)
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    return {"a": a, "b": b, "formula": "1 / (1 + exp(-(a * score + b)))"}, \
        lambda s: model.predict_proba(s[:, None])[:, 1]


def _isotonic(scores: np.ndarray, labels: np.ndarray) -> tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    """Isotonic regression: the non-decreasing step map closest to the labels; scores outside the fitted range
    take its end values."""
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)
    return {"x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist(),
            "between": "linear interpolation; outside [x[0], x[-1]] the end values"}, model.predict


CALIBRATIONS: Registry[Callable[[np.ndarray, np.ndarray], tuple[dict[str, Any], Callable]]] = Registry("calibration")
CALIBRATIONS.register("platt", _platt)
CALIBRATIONS.register("isotonic", _isotonic)


def fit_calibration(method: str, scores_csv: Path) -> Calibration:
    """Fit `method` on the validation rows of a run's scores table; refused in one line without both classes."""
    fit = CALIBRATIONS.get(method)
    if not scores_csv.is_file():
        raise UserError(f"--calibrate needs the run's validation scores: {scores_csv} is missing")
    table = read_scores(scores_csv)
    val = table[table["split"] == VAL_SPLIT]
    labels = val["label"].to_numpy(dtype=int)
    if labels.size == 0 or len(set(labels.tolist())) < 2:
        raise UserError(f"--calibrate {method}: {scores_csv} needs validation rows of both classes, has "
                        f"{int((labels == 0).sum())} real and {int(labels.sum())} fake")
    parameters, predict = fit(val["score"].to_numpy(dtype=float), labels)
    return Calibration(method, parameters, int(labels.size), int(labels.sum()), str(scores_csv.parent), predict)
