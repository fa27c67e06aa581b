"""Heads: cheap scorers on cached embeddings, looked up by name, all with the same small API.

    head = make_head("logreg", prompts=cache.prompts)
    head.fit(train, val)            # Features of the train and val rows; hyper-parameters chosen on val video AUC
    p = head.predict_proba(X)       # probability of fake, in [0, 1]

Nothing here ever sees a test row: the caller passes train and val only.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from sklearn.covariance import LedoitWolf
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from clipforensics.data.cache import PromptEmbeddings
from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.heads.components import (distance_steps, fake_probability, fixed_linear, fixed_standardise,
                                           l2_normalise, l2_rows, logistic_steps, probability_passthrough)
from clipforensics.heads.linear import grid_fits, ridge_fits
from clipforensics.heads.rows import Features
from clipforensics.measure.metrics import frame_video_auc
from clipforensics.extract.prompts import class_means

ZEROSHOT_PREFIX = "zeroshot-"
ZEROSHOT_TEMPERATURE = 100.0  # CLIP's trained logit scale: cosine differences of ~0.01 become real odds
PLATT = "Platt: logistic regression (C=1e6) on the validation decision values"


def video_auc(feats: Features, proba: np.ndarray) -> float:
    """Validation criterion: AUC of per-video mean probabilities (what the user reports)."""
    table = pd.DataFrame({"video": feats.video, "manipulation": "", "label": feats.y, "split": "val",
                          "score": proba})
    return frame_video_auc(table, split="validation")[1]


class Head:
    """Base class: `fit` on train/val Features chooses and fits `model`, a plain scikit-learn Pipeline whose
    predict_proba column 1 is P(fake); that pipeline, not the head, is what a run saves (heads/saved.py)."""

    name = "head"
    trains = True  # False for heads that use no labels at all (zero-shot)
    features = "l2-normalised embedding, standardised"  # what the classifier sees, for head.json
    calibration: str | None = None  # set where decision values become probabilities by a fitted map

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.val_auc: float = float("nan")
        self.model: Pipeline | None = None

    def fit(self, train: Features, val: Features) -> "Head":
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(fake) per row, from the pipeline itself: what is scored is exactly what a run saves."""
        return fake_probability(self.model, X)

    def choices(self) -> dict[str, Any]:
        """What the fit chose and what the pipeline does, in words and numbers (head.json's `estimator`)."""
        return {**self.params, "features": self.features, "calibration": self.calibration}


class GridHead(Head):
    """A linear scikit-learn model whose regularisation is chosen by validation video AUC of what is reported: the
    video mean of its probabilities (each candidate calibrated as the chosen one is), not of decision values."""

    grid: tuple[float, ...] = ()
    param = "C"

    def estimator(self, value: float) -> Pipeline:
        raise NotImplementedError

    def candidates(self, train: Features) -> Iterator[tuple[float, Pipeline]]:
        """Each grid value with its pipeline fitted on the training rows."""
        for value in self.grid:
            yield value, self.estimator(value).fit(train.X, train.y)

    def fit(self, train: Features, val: Features) -> "GridHead":
        best = None
        for value, model in self.candidates(train):
            if self.calibration:
                model = platt_scaled(model, val)
            auc = video_auc(val, fake_probability(model, val.X))
            if best is None or auc > best[0]:
                best = (auc, value, model)
        self.val_auc, value, self.model = best
        self.params = {self.param: value}
        return self


def platt_scaled(model: Pipeline, val: Features) -> Pipeline:
    """The fitted pipeline with its linear model's decision values mapped to probabilities by a logistic
    regression fitted on validation (stacking on the prefit model: the documented scikit-learn form)."""
    steps = model[:-1]
    platt = StackingClassifier([("linear", model[-1])], final_estimator=LogisticRegression(C=1e6),
                               stack_method="decision_function", cv="prefit").fit(steps.transform(val.X), val.y)
    return Pipeline([*steps.steps, ("platt", platt)])


def _linear(model: Any) -> Pipeline:
    """L2-normalise, then standardise: CLIP embeddings share a large common component."""
    return Pipeline([("l2", l2_rows()), ("standardise", StandardScaler()), ("classifier", model)])


class LinearHead(GridHead):
    """A linear classifier on the l2-normalised, standardised embedding. The grid's fits are made from training
    rows read a block at a time and standardised once for the whole grid (heads/linear.py): the rows as read are
    never held, and each fit is the one `estimator(value).fit` would make (on a split of one block, bit for bit)."""

    fit_dtype: Any = np.float32  # what the classifier fits on (liblinear copies anything else to float64)

    def classifier(self, value: float) -> Any:
        raise NotImplementedError

    def estimator(self, value: float) -> Pipeline:
        return _linear(self.classifier(value))

    def candidates(self, train: Features) -> Iterator[tuple[float, Pipeline]]:
        return grid_fits(train, self.grid, self.classifier, self.fit_dtype)


class LogRegHead(LinearHead):
    name, grid = "logreg", (0.001, 0.01, 0.1, 1.0)

    def classifier(self, value: float) -> LogisticRegression:
        return LogisticRegression(C=value, class_weight="balanced", max_iter=2000)


class SVMHead(LinearHead):
    name, grid, calibration, fit_dtype = "svm", (0.001, 0.01, 0.1), PLATT, np.float64

    def classifier(self, value: float) -> LinearSVC:
        # seeded: liblinear's dual solver (chosen when frames < dimensions) shuffles with numpy's global state
        return LinearSVC(C=value, class_weight="balanced", max_iter=5000, random_state=0)


class RidgeHead(LinearHead):
    name, grid, param, calibration = "ridge", (1.0, 10.0, 100.0, 1000.0), "alpha", PLATT

    def classifier(self, value: float) -> RidgeClassifier:
        return RidgeClassifier(alpha=value, class_weight="balanced")

    def candidates(self, train: Features) -> Iterator[tuple[float, Pipeline]]:
        """Solved from sums streamed over the training rows (heads/linear.py): one pass serves the whole grid, and
        the standardised rows are never held either."""
        return ridge_fits(train, self.grid)


class ZeroShotHead(Head):
    """Softmax over temperature-scaled cosines to the mean real and mean fake prompt: no training."""

    trains = False
    features = "cosines of the l2-normalised embedding to the mean real and mean fake prompt"

    def __init__(self, prompt_set: str, prompts: PromptEmbeddings) -> None:
        super().__init__()
        self.name = ZEROSHOT_PREFIX + prompt_set
        means = class_means(prompts.embeddings, prompts.labels)  # rows [real, fake] by label
        fake_minus_real = np.array([[-1], [1]], dtype=means.dtype)
        temperature = np.array([[ZEROSHOT_TEMPERATURE]], dtype=means.dtype)
        self.model = Pipeline([("l2", l2_rows()), ("cosines", fixed_linear(means.T)),
                               ("fake_minus_real", fixed_linear(fake_minus_real)),
                               ("temperature", fixed_linear(temperature)), *logistic_steps(),
                               ("probability", probability_passthrough())])
        self.params = {"prompt_set": prompt_set, "temperature": ZEROSHOT_TEMPERATURE,
                       "prompts": dict(zip(prompts.texts, prompts.labels.tolist()))}

    def fit(self, train: Features, val: Features) -> "ZeroShotHead":
        self.val_auc = video_auc(val, self.predict_proba(val.X))
        return self


class PromptFeaturesHead(LogRegHead):
    """Logistic regression on the cosines to every prompt of the `bank` set (a 10-d, readable input)."""

    name = "prompt-features"
    features = "cosines of the l2-normalised embedding to every prompt of the bank set, standardised"

    def __init__(self, prompts: PromptEmbeddings) -> None:
        super().__init__()
        self.prompt_matrix = l2_normalise(prompts.embeddings)

    def estimator(self, value: float) -> Pipeline:
        return Pipeline([("l2", l2_rows()), ("cosines", fixed_linear(self.prompt_matrix.T)),
                         ("standardise", StandardScaler()), ("classifier", self.classifier(value))])

    def candidates(self, train: Features) -> Iterator[tuple[float, Pipeline]]:
        """Fitted as a whole pipeline: its 10 cosines a row are small beside the embedding read to make them."""
        return GridHead.candidates(self, train)


class RealOnlyHead(Head):
    """One-class: Mahalanobis distance to real training embeddings (Ledoit-Wolf shrinkage).

    It never sees a fake, so it cannot overfit to the training manipulation. The distance is mapped
    to (0, 1) by a logistic on the standardised log-distance of the training reals (monotone, no labels).
    """

    name = "real-only"
    features = "log Mahalanobis distance of the l2-normalised, standardised embedding to the training reals"

    def fit(self, train: Features, val: Features) -> "RealOnlyHead":
        l2 = l2_rows().fit(train.X)
        unit = l2.transform(train.X[train.y == 0])
        scaler = StandardScaler().fit(unit)
        real = scaler.transform(unit)
        cov = LedoitWolf().fit(real)
        log_distance = Pipeline(distance_steps(cov.mahalanobis))
        logd = log_distance.transform(real)
        mu, sigma = float(logd.mean()), float(logd.std() + 1e-12)
        self.model = Pipeline([("l2", l2), ("standardise", scaler), *log_distance.steps,
                               ("standardise_log", fixed_standardise(mu, sigma)), *logistic_steps(),
                               ("probability", probability_passthrough())])
        self.params = {"shrinkage": float(cov.shrinkage_), "n_real": int(len(real))}
        self.val_auc = video_auc(val, self.predict_proba(val.X))
        return self


HEADS: Registry[Callable[[dict[str, PromptEmbeddings]], Head]] = Registry("head")
"""Head factories by name, given the cache's prompt embeddings; `zeroshot-<set>` heads come from the cache."""
HEADS.register("logreg", lambda prompts: LogRegHead())
HEADS.register("svm", lambda prompts: SVMHead())
HEADS.register("ridge", lambda prompts: RidgeHead())
HEADS.register("prompt-features", lambda prompts: PromptFeaturesHead(_prompt_set(prompts, "bank")))
HEADS.register("real-only", lambda prompts: RealOnlyHead())


def _prompt_set(prompts: dict[str, PromptEmbeddings], name: str) -> PromptEmbeddings:
    if name not in prompts:
        raise UserError(f"the cache has no prompt set {name!r} (it has: {', '.join(prompts) or 'none'}); "
                        "re-extract with --prompt-sets including it")
    return prompts[name]


PROMPT_HEADS = ("prompt-features", ZEROSHOT_PREFIX + "*")
"""Heads that score against prompt embeddings: a cache without them (an image-only encoder) cannot fit them."""
NO_PROMPTS = "the cache holds no prompt embeddings (its encoder has no text tower, or --prompt-sets was empty)"


def available_heads(prompts: dict[str, PromptEmbeddings]) -> list[str]:
    """Every head name usable with a cache holding these prompt sets."""
    names = [n for n in HEADS if n != "prompt-features" or "bank" in prompts]
    return names + [ZEROSHOT_PREFIX + p for p in prompts]


def _needs_prompts(name: str) -> bool:
    return name == "prompt-features" or name.startswith(ZEROSHOT_PREFIX)


def resolve_heads(spec: tuple[str, ...], prompts: dict[str, PromptEmbeddings]) -> list[str]:
    """Expand `all` and check names against what this cache supports; a cache without prompt embeddings drops
    the prompt heads from `all` with a note and refuses them by name."""
    if "all" in spec and not prompts:
        print(f"note: {NO_PROMPTS}: 'all' leaves out {', '.join(PROMPT_HEADS)}", file=sys.stderr)
    names = available_heads(prompts) if "all" in spec else list(dict.fromkeys(spec))
    if not names:
        raise UserError(f"--heads names no head; available: {', '.join(available_heads(prompts))}")
    unknown = [n for n in names if n not in available_heads(prompts)]
    if unknown and not prompts and _needs_prompts(unknown[0]):
        raise UserError(f"head {unknown[0]!r} needs prompt embeddings, but {NO_PROMPTS}; available: "
                        f"{', '.join(available_heads(prompts))}")
    if unknown:
        raise UserError(f"unknown head {unknown[0]!r}; available: {', '.join(available_heads(prompts))}")
    return names


def make_head(name: str, prompts: dict[str, PromptEmbeddings]) -> Head:
    if name.startswith(ZEROSHOT_PREFIX):
        set_name = name[len(ZEROSHOT_PREFIX):]
        return ZeroShotHead(set_name, _prompt_set(prompts, set_name))
    return HEADS.get(name)(prompts)


@dataclass
class FitResult:
    head: Head
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def fit_head(name: str, prompts: dict[str, PromptEmbeddings], train: Features, val: Features) -> FitResult:
    """Fit one head; train and val must each hold both classes (val chooses hyper-parameters)."""
    for split, feats in (("train", train), ("validation", val)):
        if len(set(feats.y.tolist())) < 2:
            raise UserError(f"the {split} split needs real and fake videos (it has {len(feats.y)} frames of "
                            f"{len(set(feats.y.tolist()))} class); use more videos or another --real-split")
    start = time.perf_counter()
    head = make_head(name, prompts).fit(train, val)
    seconds = time.perf_counter() - start
    return FitResult(head, seconds, {"head": name, "params": head.params, "val_video_auc": head.val_auc,
                                     "fit_seconds": round(seconds, 3)})
