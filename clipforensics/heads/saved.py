"""A fitted head on disk: `model.joblib` is a plain scikit-learn Pipeline, `head.json` the record of its choices.

    model = joblib.load("runs/demo/logreg/model.joblib")   # scikit-learn, numpy and joblib only
    p_fake = model.predict_proba(X)[:, 1]                    # X: embeddings as the cache stores them

The pickle names no clipforensics module, so moving or renaming a head class never breaks a saved run. Runs
saved before this format (a pickle of the project's own head class) are refused with a one-line request to refit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.pipeline import Pipeline

from clipforensics.core.errors import UserError
from clipforensics.core.paths import sha256_file
from clipforensics.core.io import atomic_path, write_json
from clipforensics.heads.components import CLASSES, fake_probability
from clipforensics.heads.heads import FitResult

MODEL_FILE = "model.joblib"
RECORD_FILE = "head.json"
FORMAT = "scikit-learn Pipeline; P(fake) = predict_proba(X)[:, 1]"
PACKAGE = "clipforensics"
REFIT = "refit the run with fit_heads.py"
MODEL_SHA = "model_sha256"  # head.json's sha256 of model.joblib: a model file copied from another run is refused


@dataclass
class SavedHead:
    """A loaded head: the saved pipeline, scored like the head that fitted it."""

    model: Pipeline

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(fake) per row: the callers' scorer API, the same as a freshly fitted head's."""
        return fake_probability(self.model, X)


def estimator_record(result: FitResult) -> dict[str, Any]:
    """head.json's `estimator`: the saved format, its steps, and what the head chose."""
    return {"format": FORMAT, "file": MODEL_FILE, "scikit_learn": sklearn.__version__,
            "steps": [name for name, _ in result.head.model.steps], "choices": result.head.choices()}


def save_head(out_dir: Path, result: FitResult, meta: dict[str, Any]) -> None:
    """Write the head's pipeline (not the head) and its record; scores.json keeps the fit's own info."""
    with atomic_path(out_dir / MODEL_FILE, suffix=".joblib") as tmp:
        joblib.dump(result.head.model, tmp)
    write_json(out_dir / RECORD_FILE, {**meta, **result.info, "estimator": estimator_record(result),
                                       MODEL_SHA: sha256_file(out_dir / MODEL_FILE)})


def load_head(path: Path) -> SavedHead:
    """The pipeline save_head wrote, for scorers that reuse it (robustness, detect.py). A damaged, foreign or
    previous-format file is one line: unpickling can fail with any exception type."""
    if _names_package(path):  # refused before unpickling: its classes may have moved or gone
        raise UserError(f"{path} was saved in the previous format (a pickle of a {PACKAGE} head class, not a "
                        f"scikit-learn pipeline); {REFIT}")
    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{path} is not a readable head ({type(exc).__name__}: {first}); {REFIT}") from None
    if not isinstance(model, Pipeline) or not np.array_equal(getattr(model, "classes_", ()), CLASSES):
        raise UserError(f"{path} does not hold a fitted head (a {type(model).__name__}, not a real/fake "
                        f"scikit-learn pipeline); {REFIT}")
    return SavedHead(model)


def _names_package(path: Path) -> bool:
    """A pickle spells the module of every class it holds in plain text; a saved pipeline names none of ours."""
    try:
        return PACKAGE.encode() in Path(path).read_bytes()
    except OSError:
        return False  # joblib.load reports it
