"""Heads: cheap scorers on cached embeddings, looked up by name, all with the same small API.

    head = make_head("logreg", prompts=cache.prompts)
    head.fit(train, val)            # Features of the train and val rows; hyper-parameters chosen on val video AUC
    p = head.predict_proba(X)       # probability of fake, in [0, 1]

Nothing here ever sees a test row: the caller passes train and val only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import LinearSVC

from clipforensics.data.cache import PromptEmbeddings
from clipforensics.core.errors import UserError
from clipforensics.core.registry import Registry
from clipforensics.measure.metrics import frame_video_auc
from clipforensics.extract.prompts import class_means

ZEROSHOT_PREFIX = "zeroshot-"
ZEROSHOT_TEMPERATURE = 100.0  # CLIP's trained logit scale: cosine differences of ~0.01 become real odds


@dataclass
class Features:
    """Embeddings of some rows with what selection needs: labels and video ids."""

    X: np.ndarray
    y: np.ndarray
    video: np.ndarray

    @classmethod
    def of(cls, embeddings: np.ndarray, rows: pd.DataFrame) -> "Features":
        idx = rows.index.to_numpy()
        return cls(embeddings[idx].astype(np.float32), rows["label"].to_numpy(int), rows["video"].to_numpy())


def l2_normalise(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def video_auc(feats: Features, proba: np.ndarray) -> float:
    """Validation criterion: AUC of per-video mean probabilities (what the user reports)."""
    table = pd.DataFrame({"video": feats.video, "manipulation": "", "label": feats.y, "split": "val",
                          "score": proba})
    return frame_video_auc(table, split="validation")[1]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


class Head:
    """Base class: `fit` on train/val Features, `predict_proba` on an embedding matrix."""

    name = "head"
    trains = True  # False for heads that use no labels at all (zero-shot)

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.val_auc: float = float("nan")

    def fit(self, train: Features, val: Features) -> "Head":
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class GridHead(Head):
    """A linear scikit-learn model whose regularisation is chosen by validation video AUC."""

    grid: tuple[float, ...] = ()
    param = "C"
    calibrate = False  # decision values -> probabilities by Platt scaling on validation

    def estimator(self, value: float):
        raise NotImplementedError

    def _decision(self, model, X: np.ndarray) -> np.ndarray:
        return model.decision_function(X)

    def fit(self, train: Features, val: Features) -> "GridHead":
        best = None
        for value in self.grid:
            model = self.estimator(value).fit(train.X, train.y)
            auc = video_auc(val, self._decision(model, val.X))
            if best is None or auc > best[0]:
                best = (auc, value, model)
        self.val_auc, value, self.model = best
        self.params = {self.param: value}
        if self.calibrate:
            self.platt = LogisticRegression(C=1e6).fit(self._decision(self.model, val.X)[:, None], val.y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.calibrate:
            return self.platt.predict_proba(self._decision(self.model, X)[:, None])[:, 1]
        return self.model.predict_proba(X)[:, 1]


def _linear(model) -> Any:
    """L2-normalise, then standardise: CLIP embeddings share a large common component."""
    return make_pipeline(FunctionTransformer(l2_normalise), StandardScaler(), model)


class LogRegHead(GridHead):
    name, grid = "logreg", (0.001, 0.01, 0.1, 1.0)

    def estimator(self, value: float):
        return _linear(LogisticRegression(C=value, class_weight="balanced", max_iter=2000))


class SVMHead(GridHead):
    name, grid, calibrate = "svm", (0.001, 0.01, 0.1), True

    def estimator(self, value: float):
        return _linear(LinearSVC(C=value, class_weight="balanced", max_iter=5000))


class RidgeHead(GridHead):
    name, grid, param, calibrate = "ridge", (1.0, 10.0, 100.0, 1000.0), "alpha", True

    def estimator(self, value: float):
        return _linear(RidgeClassifier(alpha=value, class_weight="balanced"))


class ZeroShotHead(Head):
    """Softmax over temperature-scaled cosines to the mean real and mean fake prompt: no training."""

    trains = False

    def __init__(self, prompt_set: str, prompts: PromptEmbeddings) -> None:
        super().__init__()
        self.name = ZEROSHOT_PREFIX + prompt_set
        self.means = class_means(prompts.embeddings, prompts.labels)  # rows [real, fake] by label
        self.params = {"prompt_set": prompt_set, "temperature": ZEROSHOT_TEMPERATURE,
                       "prompts": dict(zip(prompts.texts, prompts.labels.tolist()))}

    def fit(self, train: Features, val: Features) -> "ZeroShotHead":
        self.val_auc = video_auc(val, self.predict_proba(val.X))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        cos = l2_normalise(X) @ self.means.T
        return _sigmoid(ZEROSHOT_TEMPERATURE * (cos[:, 1] - cos[:, 0]))


class PromptFeaturesHead(LogRegHead):
    """Logistic regression on the cosines to every prompt of the `bank` set (a 10-d, readable input)."""

    name = "prompt-features"

    def __init__(self, prompts: PromptEmbeddings) -> None:
        super().__init__()
        self.prompt_matrix = l2_normalise(prompts.embeddings)

    def _cosines(self, X: np.ndarray) -> np.ndarray:
        return l2_normalise(X) @ self.prompt_matrix.T

    def estimator(self, value: float):
        return make_pipeline(FunctionTransformer(self._cosines), StandardScaler(),
                             LogisticRegression(C=value, class_weight="balanced", max_iter=2000))


class RealOnlyHead(Head):
    """One-class: Mahalanobis distance to real training embeddings (Ledoit-Wolf shrinkage).

    It never sees a fake, so it cannot overfit to the training manipulation. The distance is mapped
    to (0, 1) by a logistic on the standardised log-distance of the training reals (monotone, no labels).
    """

    name = "real-only"

    def fit(self, train: Features, val: Features) -> "RealOnlyHead":
        real = self._prep_fit(train.X[train.y == 0])
        self.cov = LedoitWolf().fit(real)
        logd = np.log(self._distance(real))
        self.mu, self.sigma = float(logd.mean()), float(logd.std() + 1e-12)
        self.params = {"shrinkage": float(self.cov.shrinkage_), "n_real": int(len(real))}
        self.val_auc = video_auc(val, self.predict_proba(val.X))
        return self

    def _prep_fit(self, X: np.ndarray) -> np.ndarray:
        self.scaler = StandardScaler().fit(l2_normalise(X))
        return self.scaler.transform(l2_normalise(X))

    def _distance(self, Z: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.cov.mahalanobis(Z), 1e-12))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        d = self._distance(self.scaler.transform(l2_normalise(X)))
        return _sigmoid((np.log(d) - self.mu) / self.sigma)


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


def available_heads(prompts: dict[str, PromptEmbeddings]) -> list[str]:
    """Every head name usable with a cache holding these prompt sets."""
    names = [n for n in HEADS if n != "prompt-features" or "bank" in prompts]
    return names + [ZEROSHOT_PREFIX + p for p in prompts]


def resolve_heads(spec: tuple[str, ...], prompts: dict[str, PromptEmbeddings]) -> list[str]:
    """Expand `all` and check names against what this cache supports."""
    names = available_heads(prompts) if "all" in spec else list(dict.fromkeys(spec))
    if not names:
        raise UserError(f"--heads names no head; available: {', '.join(available_heads(prompts))}")
    unknown = [n for n in names if n not in available_heads(prompts)]
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
